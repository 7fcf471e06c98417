"""The development certificate for AMQP over TLS (5671) and the local token issuer's signing key.

Made once under `<data-dir>/tls/` and reused: `ca.pem` is a private certificate authority that signed
`server.pem` (for localhost, 127.0.0.1 and ::1); a client trusts the emulator by trusting `ca.pem`
(the SDK: `ServiceBusClient(..., connection_verify=".data/servicebus/tls/ca.pem")`). Nothing here is
secret beyond this machine: like the SAS dev key, it only lets the real client code paths run.
`issuer-key.pem` signs the Entra ID style tokens the emulator issues (identity.py). The CA's own key is
never written: once it has signed the server certificate it is gone, so trusting `ca.pem` trusts that
certificate only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CERT_FILE, KEY_FILE, ISSUER_KEY_FILE = "ca.pem", "server.pem", "server-key.pem", "issuer-key.pem"
_NAMES = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
          x509.IPAddress(ipaddress.ip_address("::1"))]


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "batch-orchestrator local emulators")])


def ensure(folder: str | Path) -> Path:
    """Create the CA, the server certificate and the issuer key in `folder` unless they are there."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / ISSUER_KEY_FILE).exists():
        (folder / ISSUER_KEY_FILE).write_bytes(_pem_key(_key()))
    if all((folder / f).exists() for f in (CA_FILE, CERT_FILE, KEY_FILE)):
        return folder
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key, server_key = _key(), _key()
    ca = (x509.CertificateBuilder().subject_name(_name("Local Service Bus emulator dev CA"))
          .issuer_name(_name("Local Service Bus emulator dev CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
              .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
              .add_extension(x509.SubjectAlternativeName(_NAMES), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    (folder / KEY_FILE).write_bytes(_pem_key(server_key))
    (folder / CERT_FILE).write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (folder / CA_FILE).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return folder


def server_context(folder: str | Path) -> ssl.SSLContext:
    folder = Path(folder)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(folder / CERT_FILE, folder / KEY_FILE)
    return context
