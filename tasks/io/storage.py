"""Storage failures (local disk, s3fs, botocore, aiohttp) as pumphouse errors, by what to do.

s3fs has already retried throttling and dropped connections (and botocore under it, as
`config_kwargs.retries` says) by the time an error gets here. What is left is sorted: a missing
bucket or object and refused credentials are for the user to fix (DataError); throttling,
timeouts and resets may pass on a later try (TransientError, which the stage and load steps
retry); anything else is not a storage error and passes through unchanged.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from schemas import secrets
from schemas.errors import DataError, PumpError, SpecError, TransientError

# errno values s3fs gives S3 error codes that a later request may not get: SlowDown,
# ServiceUnavailable (EBUSY), InternalError (EREMOTEIO), an unknown code (EIO); and the
# network's own.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EBUSY,
        errno.EIO,
        getattr(errno, "EREMOTEIO", errno.EIO),
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.EAGAIN,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
    }
)
# botocore errors that mean "no usable credentials", whatever the store would say.
CREDENTIAL_ERRORS = frozenset(
    {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "UnauthorizedSSOTokenError",
        "TokenRetrievalError",
    }
)


# Credentials s3fs (botocore) takes from the environment when storage_options give none.
ENV_CREDENTIALS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def remember_env_credentials() -> None:
    """Mask the AWS credentials in the environment, as if a spec had named them."""
    for name in ENV_CREDENTIALS:
        value = os.environ.get(name)
        if value:
            secrets.remember(value)


def kind(e: BaseException) -> str | None:
    """'missing', 'denied', 'not_a_folder', 'no_credentials', 'refused' (a request the store
    will never accept), 'bad_option', 'transient', or None when `e` is not a storage failure."""
    names = {c.__name__ for c in type(e).__mro__}
    if isinstance(e, PumpError):
        return None
    if isinstance(e, FileNotFoundError):
        return "missing"
    if isinstance(e, PermissionError):
        return "denied"
    if isinstance(e, NotADirectoryError | IsADirectoryError | FileExistsError):
        return "not_a_folder"
    if names & CREDENTIAL_ERRORS:
        return "no_credentials"
    if isinstance(e, TimeoutError | ConnectionError):
        return "transient"
    response = getattr(e, "response", None)
    if "ClientError" in names and isinstance(response, dict) and "Error" in response:
        from s3fs.errors import translate_boto_error  # an S3 answer s3fs has not translated

        translated = translate_boto_error(e)
        return kind(translated) if translated is not e else "transient"
    if "ParamValidationError" in names:
        return "refused"
    if "BotoCoreError" in names or "ClientError" in names:  # botocore's, or aiohttp's
        return "transient"
    if isinstance(e, OSError):
        if e.errno is None or e.errno in TRANSIENT_ERRNOS or "pre-condition" in str(e):
            return "transient"  # a precondition: the object was replaced while it was read
        return "refused"
    if isinstance(e, TypeError) and "unexpected keyword argument" in str(e):
        return "bad_option"  # s3fs passes unknown storage_options on to botocore's session
    return None


def storage_error(e: BaseException, where: str, doing: str, options: str) -> BaseException:
    """The pumphouse error for storage failure `e` while `doing` (reading, listing, writing)
    `where` (a key and a URL, without secrets); `options` names where credentials come from.
    `e` itself when it is not a storage failure."""
    from tasks.io.failures import resource_error  # a full disk is the machine's, not the store's

    return resource_error(e) or _error(kind(e), _detail(e), where, doing, options) or e


def no_bucket(detail: str) -> bool:
    """Whether a missing-path failure's text says the bucket itself is not there."""
    return "bucket does not exist" in detail or "NoSuchBucket" in detail


def _error(
    found: str | None, detail: str, where: str, doing: str, options: str
) -> PumpError | None:
    """The error for a storage failure of kind `found` (see kind), None for no kind."""
    if found == "missing":
        if no_bucket(detail):
            return DataError(
                f"{where}: the bucket does not exist; create it, or fix the bucket name in the URL"
            )
        return DataError(
            f"{where}: no such file or folder; check the path (relative paths start at the "
            "working directory) and storage_options"
        )
    if found == "not_a_folder":
        return DataError(
            f"{where}: a file stands where a folder must be, or a folder where a file must "
            f"be ({detail}); fix the URL, or move what is in the way"
        )
    if found == "denied":
        return DataError(
            f"{where}: access denied ({detail}); check the credentials in {options} "
            "and that they may read and write there"
        )
    if found == "no_credentials":
        return DataError(
            f"{where}: no credentials found ({detail}); set key and secret in {options}, "
            "or the AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY environment variables"
        )
    if found == "refused":
        return DataError(
            f"{where}: the store refused the request ({detail}); check the URL, the region "
            f"and {options}"
        )
    if found == "bad_option":
        return SpecError(
            f"{where}: {options} holds an option this filesystem does not take ({detail}); "
            "see the fsspec (s3fs) documentation for its options"
        )
    if found == "transient":
        return TransientError(
            f"{where}: {doing} failed after retries ({detail}); the store is unavailable or "
            "throttling, run again later"
        )
    return None


@contextmanager
def storage_errors(where: str, doing: str, options: str) -> Iterator[None]:
    """Raise storage failures inside the block as storage_error() says, without the chain
    (a botocore chain holds request details, never wanted in a message)."""
    try:
        yield
    except Exception as e:
        mapped = storage_error(e, where, doing, options)
        if mapped is e:
            raise
        raise mapped from None


def _detail(e: BaseException) -> str:
    text = str(e.args[1] if isinstance(e, OSError) and len(e.args) == 2 else e) or ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")
_PASSING = (
    "error sending request",
    "retries",  # object_store retried it already: "after 10 retries"
    "429 too many requests",
    "connection closed",
    "connection refused",
    "connection reset",
    "timed out",
    "dns error",
    "slowdown",
    "500 internal",
    "502 bad gateway",
    "503 service",
    "504 gateway",
)


def object_store_error(e: OSError, where: str, doing: str, options: str) -> PumpError | None:
    """A deltalake storage failure (Rust object_store: a chain of lines, ANSI colours, the
    store's XML answer) as the pumphouse error storage_error() would give; None when its
    text says nothing this can sort."""
    text = plain(e)
    found = _S3_CODE.search(text)
    code = found.group(1) if found else ""
    steps = [line.strip().lstrip("↳").strip() for line in text.splitlines()]
    steps = [line for line in steps if line and not line.startswith("<")]
    detail = steps[-1] if steps else type(e).__name__
    lowered = text.lower()
    if code == "NoSuchBucket":
        return _error("missing", code, where, doing, options)
    if code in _DENIED or "403 forbidden" in lowered or "permission denied" in lowered:
        return _error("denied", code or detail, where, doing, options)
    if any(p in lowered for p in _PASSING):
        return _error("transient", detail, where, doing, options)
    return None


def plain(e: BaseException) -> str:
    """An error's text without the terminal colours deltalake puts in it."""
    return _ANSI.sub("", str(e)).strip()
