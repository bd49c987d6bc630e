"""Throwaway TLS certificates for the sandbox's servers, made with `openssl`.

`CertificateAuthority.create` writes a self-signed CA into a directory and
`issue` signs a certificate for loopback names with it. Everything is PEM with
unencrypted PKCS#8 keys on ECDSA P-256, which redis-server, librdkafka,
Python's `ssl` and Kafka's PEM key stores (``ssl.keystore.type=PEM``) all
read, so no Java key store and no `keytool` are needed. The files are meant
for tests and demos on 127.0.0.1 only: the keys are not protected.
"""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scorer.errors import ScorerError
from scorer.sandbox import LOOPBACK_HOST, require_tool, run_to_end, tail

logger = logging.getLogger(__name__)

OPENSSL_HINT = "install OpenSSL (Debian: openssl)"
OPENSSL_TIMEOUT_S = 30.0  # one key or signature; takes milliseconds
VALID_DAYS = 2  # a test run needs minutes; a stale file should fail soon
LOOPBACK_NAMES = ("localhost", LOOPBACK_HOST)

# Extensions Python 3.13's strict verification (VERIFY_X509_STRICT) insists
# on: a critical CA constraint, key usages, and key identifiers on both ends.
_CA_EXTENSIONS = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = scorer sandbox CA
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""
_LEAF_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = {names}
"""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate and its private key, as PEM files."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    """The CA certificate that signed it: what a peer must trust."""

    @property
    def bundle_file(self) -> Path:
        """Key and certificate in one file, as Kafka's PEM key store wants."""
        return self.cert_file.with_suffix(".bundle.pem")


class CertificateAuthority:
    """A self-signed CA whose files live in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_file = directory / "ca.crt"
        self.key_file = directory / "ca.key"
        self._serial = 1

    @classmethod
    def create(cls, directory: Path) -> CertificateAuthority:
        """Write a new CA key and certificate into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        authority = cls(directory)
        config = directory / "ca.cnf"
        config.write_text(_CA_EXTENSIONS)
        _openssl(
            directory,
            ["req", "-x509", "-config", str(config), "-extensions", "ca"],
            _new_key(authority.key_file),
            ["-days", str(VALID_DAYS), "-out", str(authority.cert_file)],
        )
        logger.info("test CA created dir=%s", directory)
        return authority

    def issue(
        self, name: str, hosts: tuple[str, ...] = LOOPBACK_NAMES
    ) -> IssuedCertificate:
        """A certificate for `hosts` (names and IP addresses), signed by this CA."""
        cert_file = self.directory / f"{name}.crt"
        key_file = self.directory / f"{name}.key"
        request = self.directory / f"{name}.csr"
        extensions = self.directory / f"{name}.ext"
        extensions.write_text(_LEAF_EXTENSIONS.format(names=_alt_names(hosts)))

        _openssl(
            self.directory,
            ["req", "-new", "-subj", f"/CN={hosts[0]}"],
            _new_key(key_file),
            ["-out", str(request)],
        )
        self._sign(request, extensions, cert_file)

        issued = IssuedCertificate(cert_file, key_file, self.cert_file)
        issued.bundle_file.write_text(key_file.read_text() + cert_file.read_text())
        return issued

    def _sign(self, request: Path, extensions: Path, cert_file: Path) -> None:
        self._serial += 1
        _openssl(
            self.directory,
            ["x509", "-req", "-in", str(request)],
            ["-CA", str(self.cert_file), "-CAkey", str(self.key_file)],
            ["-set_serial", str(self._serial), "-days", str(VALID_DAYS)],
            ["-extfile", str(extensions), "-out", str(cert_file)],
        )


def _new_key(key_file: Path) -> list[str]:
    # -noenc: the key file is unencrypted PKCS#8 ("BEGIN PRIVATE KEY").
    return [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-noenc",
        "-keyout",
        str(key_file),
    ]


def _alt_names(hosts: tuple[str, ...]) -> str:
    return ", ".join(
        f"IP:{host}" if _is_address(host) else f"DNS:{host}" for host in hosts
    )


def _is_address(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def _openssl(cwd: Path, *parts: list[str]) -> None:
    command = [require_tool("openssl", OPENSSL_HINT)]
    for part in parts:
        command += part
    try:
        result = run_to_end(command, cwd, OPENSSL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ScorerError(f"openssl {parts[0][0]} timed out") from exc
    if result.returncode != 0:
        output = tail(result.stdout + result.stderr)
        raise ScorerError(f"openssl {parts[0][0]} failed:\n{output}")
