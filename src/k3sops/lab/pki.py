"""The lab's PKI: a CA, the API server's serving certificate, client certificates, SA keys.

ECDSA P-256 throughout: fast to generate, accepted by every component. Files are written with
mode 0600 (keys) under the run directory and never printed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from k3sops.adapters.files import write_atomic

VALIDITY = dt.timedelta(days=365)
"""K3s issues its certificates for 365 days; the lab does the same."""


@dataclass(frozen=True)
class Pki:
    """Paths of the lab's certificates and keys."""

    dir: Path

    def crt(self, name: str) -> Path:
        """Certificate file of ``name``."""
        return self.dir / f"{name}.crt"

    def key(self, name: str) -> Path:
        """Private key file of ``name``."""
        return self.dir / f"{name}.key"

    @property
    def sa_pub(self) -> Path:
        """Service-account token verification key."""
        return self.dir / "sa.pub"


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data, 0o600 if private else 0o644)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _issue(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, cn: str,
           org: str | None, server: bool, sans: list[str], now: dt.datetime,
           ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (x509.CertificateBuilder().subject_name(_name(cn, org))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=False,
                                            crl_sign=False, encipher_only=False,
                                            decipher_only=False), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if sans:
        entries: list[x509.GeneralName] = []
        for s in sans:
            try:
                entries.append(x509.IPAddress(ipaddress.ip_address(s)))
            except ValueError:
                entries.append(x509.DNSName(s))
        builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def generate(pki_dir: Path, service_ip: str = "10.43.0.1") -> Pki:
    """Create the CA and every certificate the lab needs (idempotent: keeps an existing CA)."""
    pki = Pki(pki_dir)
    now = dt.datetime.now(dt.UTC)
    if pki.crt("ca").is_file() and pki.key("ca").is_file() and pki.crt("admin").is_file():
        return pki
    ca_key = _key()
    ca_cert = (x509.CertificateBuilder().subject_name(_name("k3sops-lab-ca"))
               .issuer_name(_name("k3sops-lab-ca")).public_key(ca_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + 10 * VALIDITY)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                            content_commitment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    _write(pki.key("ca"), _pem_key(ca_key), private=True)
    _write(pki.crt("ca"), ca_cert.public_bytes(serialization.Encoding.PEM))
    sans = ["localhost", "127.0.0.1", service_ip, "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    issued = {
        "apiserver": ("kube-apiserver", None, True, sans),
        "kwok": ("kwok", None, True, ["localhost", "127.0.0.1"]),
        "admin": ("k3sops-lab-admin", "system:masters", False, []),
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters", False, []),
    }
    for name, (cn, org, server, names) in issued.items():
        key, cert = _issue(ca_key, ca_cert, cn, org, server, names, now)
        _write(pki.key(name), _pem_key(key), private=True)
        _write(pki.crt(name), cert.public_bytes(serialization.Encoding.PEM))
    sa = _key()
    _write(pki.key("sa"), _pem_key(sa), private=True)
    _write(pki.sa_pub, sa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


def kubeconfig_text(pki: Pki, server: str, name: str = "k3sops-lab", user: str = "admin") -> str:
    """An admin kubeconfig with the CA, certificate and key embedded (one self-contained file)."""
    import base64

    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return (
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: {name}\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {b64(pki.crt('ca'))}\n"
        f"users:\n- name: {name}-{user}\n  user:\n"
        f"    client-certificate-data: {b64(pki.crt(user))}\n"
        f"    client-key-data: {b64(pki.key(user))}\n"
        f"contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}-{user}\n"
        f"current-context: {name}\n"
    )


def write_private(path: Path, text: str) -> None:
    """Write a file holding credentials with mode 0600, atomically."""
    _write(path, text.encode(), private=True)
