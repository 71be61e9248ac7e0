"""Writes a throwaway CA and certificates for the TLS interop scenarios,
made by `trustme` (a test CA from PyPI), into the directory given:

  ca.pem                     the CA certificate both sides trust
  server.pem, server.key     for localhost and 127.0.0.1
  client.pem, client.key     a client certificate (for mutual TLS)
"""

import sys
from pathlib import Path

import trustme


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(out / "ca.pem"))
    for name, identities in (("server", ("localhost", "127.0.0.1")), ("client", ("client.example",))):
        cert = ca.issue_cert(*identities)
        cert.private_key_pem.write_to_path(str(out / f"{name}.key"))
        # The chain, leaf first.
        with open(out / f"{name}.pem", "wb") as chain:
            for pem in cert.cert_chain_pems:
                chain.write(pem.bytes())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
