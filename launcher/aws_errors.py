"""AWS failures as one line that says what to do: the fix first, AWS's own words after.

boto3 raises two families: botocore's local errors (no profile, a config file it cannot parse,
no credentials, an SSO token to refresh, an endpoint it cannot reach) and ClientError, AWS's answer
(expired token, missing bucket, throttling, access denied, a 5xx). Each becomes one line, with
control characters escaped and an HTML error page reduced to its text, never its first tag.
Credential values never appear: botocore's messages name profiles and files, not keys.
"""

from __future__ import annotations

import html
import re

SSO_LOGIN = "run `aws sso login` (or refresh the credentials of your AWS profile)"
REGION_HINT = "check `cluster.region`"
EXPIRED_CODES = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
THROTTLE_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
                  "TooManyRequestsException", "SlowDown", "RequestThrottled", "RequestThrottledException"}
DENIED_CODES = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                "InvalidClientTokenId", "SignatureDoesNotMatch"}
BUCKET_CODES = {"NoSuchBucket"}
KEY_ID_CODES = {"InvalidAccessKeyId"}
"""S3's code for an access key ID that AWS does not have (deleted, mistyped, or of another partition or endpoint;
https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html#ErrorCodeList)."""
MAX_DETAIL = 300
_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.S | re.I)


def one_line(text: str, limit: int = MAX_DETAIL) -> str:
    """Text on one line: an HTML page reduced to its words, whitespace collapsed, control characters escaped."""
    if re.search(r"<\s*(!doctype|html|body|head|title)\b", text, re.I):
        text = html.unescape(_TAG.sub(" ", text))
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _client_error_line(what: str, exc, where: dict[str, str]) -> str:
    error = exc.response.get("Error", {}) or {}
    meta = exc.response.get("ResponseMetadata", {}) or {}
    code, status = str(error.get("Code", "")), meta.get("HTTPStatusCode")
    message = one_line(str(error.get("Message") or ""))
    if not message or message == code:  # a body botocore could not parse: keep what the service sent
        message = one_line(str(exc).split(": ", 1)[-1])
    said = f"{code}: {message}" if code and not code.isdigit() else f"HTTP {status or code}: {message}"
    if code in EXPIRED_CODES:
        return f"{what} failed: the AWS credentials have expired; {SSO_LOGIN} ({said})"
    if code in THROTTLE_CODES:
        retries = meta.get("RetryAttempts")
        tried = f" after {retries} retries" if retries else ""
        return f"{what} failed: AWS is throttling these requests{tried}; wait a minute and run it again ({said})"
    if code in BUCKET_CODES or (code == "404" and "bucket" in where):
        bucket = error.get("BucketName") or where.get("bucket", "")
        key = where.get("key", "the s3:// URI")
        return f"{what} failed: S3 bucket {bucket!r} does not exist (or is in another account); create it or " \
               f"check `{key}` ({said})"
    if code == "403" and "bucket" in where:  # HeadBucket: a HEAD response has no body, so no error code
        return f"{what} failed: AWS refused access to S3 bucket {where['bucket']!r}; check that the credentials are " \
               "valid (`aws sts get-caller-identity`) and may list the bucket (s3:ListBucket), or fix " \
               f"`{where.get('key', 'the s3:// URI')}` ({said})"
    if code in KEY_ID_CODES:
        return f"{what} failed: AWS does not know the access key ID these credentials use (deleted, mistyped, or " \
               "of another account's partition); check AWS_ACCESS_KEY_ID or the profile's aws_access_key_id " \
               f"(`aws configure list` shows which is used) or run `aws configure` ({said})"
    if code in DENIED_CODES:
        return f"{what} failed: AWS refused the request; check that your AWS identity (and profile) may do " \
               f"this in region {where.get('region', '?')} ({said})"
    if status and int(status) >= 500:
        return f"{what} failed: AWS had an internal error (HTTP {status}); run it again later ({message})"
    return f"{what} failed: {said}"


def aws_error_line(what: str, exc: Exception, **where: str) -> str | None:
    """One line for an AWS failure, or None when exc is not one. where: region, bucket, key (config key)."""
    try:
        from botocore import exceptions as bx
    except ImportError:
        return None
    region = where.get("region", "")
    if isinstance(exc, bx.ClientError):
        return _client_error_line(what, exc, where)
    if isinstance(exc, bx.ProfileNotFound):
        profile = exc.kwargs.get("profile", "")
        return f"{what} failed: AWS profile {profile!r} is not in ~/.aws/config or ~/.aws/credentials; set " \
               f"AWS_PROFILE to a profile you have, or create it with `aws configure --profile {profile}`"
    if isinstance(exc, bx.ConfigParseError):
        return f"{what} failed: cannot parse the AWS config file {exc.kwargs.get('path', '')}; fix its syntax " \
               "(`aws configure list` shows what the AWS CLI reads)"
    if isinstance(exc, (bx.UnauthorizedSSOTokenError, bx.SSOTokenLoadError, bx.TokenRetrievalError, bx.SSOError)):
        return f"{what} failed: the AWS SSO session has expired or is missing; {SSO_LOGIN}"
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        return f"{what} failed: no usable AWS credentials ({one_line(str(exc))}); run `aws configure` or " \
               "`aws sso login`, or set AWS_PROFILE"
    if isinstance(exc, (bx.NoRegionError, bx.InvalidRegionError, bx.UnknownEndpointError)):
        return f"{what} failed: region {region!r} is not one AWS knows; {REGION_HINT}"
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
        return f"{what} failed: cannot reach AWS in region {region!r} ({one_line(str(exc))}); {REGION_HINT} " \
               "and your network"
    if isinstance(exc, bx.BotoCoreError):
        return f"{what} failed: {one_line(str(exc))}"
    return None
