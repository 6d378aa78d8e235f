"""Lab users without rights: client certificates the lab CA signs, and kubeconfigs for them."""

from __future__ import annotations

from pathlib import Path

from conftest import Lab


def client_cert(p, cn: str) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_key = serialization.load_pem_private_key(p.key("ca").read_bytes(), None)
    ca = x509.load_pem_x509_certificate(p.crt("ca").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            cert.public_bytes(serialization.Encoding.PEM))


def user_kubeconfig(lab: Lab, user: str, path: Path) -> Path:
    """Write a kubeconfig at ``path`` for ``user``, a client certificate the lab CA signs
    (valid one hour); RBAC grants it nothing until a test binds a role to ``user``."""
    import base64

    from k3sops.lab import pki

    p = pki.Pki(lab.layout.pki_dir)
    key, cert = client_cert(p, user)

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    server = f"https://127.0.0.1:{lab.layout.port('apiserver')}"
    path.write_text(
        f"apiVersion: v1\nkind: Config\nclusters:\n- name: l\n  cluster:\n    server: {server}\n"
        f"    certificate-authority-data: {b64(p.crt('ca').read_bytes())}\n"
        f"users:\n- name: u\n  user:\n    client-certificate-data: {b64(cert)}\n"
        f"    client-key-data: {b64(key)}\n"
        "contexts:\n- name: c\n  context: {cluster: l, user: u}\ncurrent-context: c\n")
    return path
