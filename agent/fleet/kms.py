"""Follower-side decryption of a SecureString's ciphertext with the agent's own kms:Decrypt.

Parameter Store encrypts a standard-tier SecureString under the encryption context
{"PARAMETER_ARN": <the parameter's ARN>}, so a record's ciphertext decrypts only as the parameter
it claims to be. Where the key's policy allows use only through SSM (the AWS-managed `aws/ssm`
key, or a `kms:ViaService` condition) Decrypt is denied: the caller then fetches the name from SSM.
"""

from __future__ import annotations

import base64
import binascii
import time

from agent.metrics import Metrics
from agent.results import SourceError
from agent.sources.aws import ApiError, AwsClient, AwsSession


class DecryptFailed(Exception):
    """KMS would not (or could not) decrypt; the reason holds a code, never a value."""


class KmsDecryptor:
    # After a denial, skip KMS for a while: the same key policy will deny the next one too.
    DENIAL_MEMORY = 600.0

    def __init__(self, aws: AwsSession, metrics: Metrics) -> None:
        self._kms = AwsClient("kms", aws, metrics)
        self._denied_until = 0.0

    async def decrypt(self, ciphertext: str, arn: str) -> str:
        if time.monotonic() < self._denied_until:
            raise DecryptFailed("denied earlier (KMS skipped for a while)")
        try:
            blob = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError):
            raise DecryptFailed("not a KMS ciphertext") from None
        try:
            resp = await self._kms.call(
                "Decrypt", CiphertextBlob=blob, EncryptionContext={"PARAMETER_ARN": arn}
            )
        except ApiError as exc:
            if exc.code in (
                "AccessDeniedException",
                "KMSInvalidStateException",
                "DisabledException",
            ):
                self._denied_until = time.monotonic() + self.DENIAL_MEMORY
            raise DecryptFailed(exc.code) from None
        except SourceError as exc:
            raise DecryptFailed(str(exc)) from None
        plaintext: bytes = resp["Plaintext"]
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptFailed("plaintext is not UTF-8") from None

    async def close(self) -> None:
        await self._kms.close()
