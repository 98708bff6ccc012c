#!/usr/bin/env python3
"""Mints an HS256 token for Switchboard with the Python standard library only.

    scripts/mint-token.py SECRET SUB [CLAIMS_JSON] [--ttl SECONDS]

    scripts/mint-token.py "$JWT_SECRET" alice
    scripts/mint-token.py "$JWT_SECRET" alice '{"rooms": ["general", "team-*"], "broadcast": false}'

Prints the token. The token expires after --ttl seconds (default 3600). For RS256/ES256, sign
with your identity provider or a JWT library (PyJWT, jsonwebtoken for Node).
"""
import argparse
import base64
import hashlib
import hmac
import json
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    parser = argparse.ArgumentParser(description="Mint an HS256 token for Switchboard.")
    parser.add_argument("secret", help="the server's --jwt-secret")
    parser.add_argument("sub", help="the user id")
    parser.add_argument("claims", nargs="?", default="{}", help="extra claims as a JSON object")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp (default 3600)")
    args = parser.parse_args()
    claims = {"sub": args.sub, "exp": int(time.time()) + args.ttl, **json.loads(args.claims)}
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64(hmac.new(args.secret.encode(), signing_input, hashlib.sha256).digest())
    print(f"{header}.{payload}.{signature}")


if __name__ == "__main__":
    main()
