"""The orchestration core, in rooms that say what may happen inside (checked by tests/unit/test_layering.py):

- `shared.pure`: decisions and data shapes. No I/O, no SDK import, no clock: time comes in as an argument.
- `shared.adapters`: the only code that imports the Azure SDKs. Each adapter is a small interface that
  answers in the project's own typed values (`shared.pure.values`), never in wire dicts.
- `shared.flows`: what a trigger does, step by step: adapters for the I/O, pure modules for the choices.
- `shared.node`: scripts that run on Batch nodes. Python standard library only, shipped as files.
"""
