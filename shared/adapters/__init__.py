"""Adapters: the only code that imports the Azure SDKs (azure-batch, azure-storage-blob, azure-servicebus,
azure-identity). Each answers in the project's own typed values and speaks the core's error vocabulary
(`shared.adapters.batch.Transient`, `QuotaReached`, `Refused`), so nothing above them sees a wire shape.
"""
