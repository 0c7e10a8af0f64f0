"""schemathesis hooks for tests/openapi.rs: what a schema cannot say.

1. An idempotency key (the Idempotency-Key header, or a report's submissionId) is
   stored at most once per principal: the same key with another body is 422
   ("reused with a different body"). That depends on what was sent before
   (tests/idempotency.rs tests it), so every request here gets keys of its own: a
   valid key gets a fresh suffix.
2. When a report carries both keys they must be equal (else 400): a rule across a
   header and the body. The header takes the body's key, or is left out when that
   key is not one a header can carry (it is optional).
3. JSON Schema's "integer" admits 6.0; FHIR's integer is written without a fraction
   (R4: -?([0]|([1-9][0-9]*))), and the server refuses 6.0. A valueInteger drawn as
   an integral float is sent as the integer it is.

Negative cases are left alone: a refusal is what they expect, and an edit here
would make schemathesis revalidate one as positive and send what it meant to leave
out.
"""

import itertools
import re

import schemathesis

_fresh = itertools.count()
_HEADER_KEY = re.compile(r"^[!-~]{1,126}$")


def _unique(key, limit):
    if not isinstance(key, str) or not key:
        return key
    suffix = f"-{next(_fresh)}"
    return key[: max(1, limit - len(suffix))] + suffix


def _integers(value):
    if isinstance(value, dict):
        for name, inner in value.items():
            if name == "valueInteger" and isinstance(inner, float) and inner.is_integer():
                value[name] = int(inner)
            else:
                _integers(inner)
    elif isinstance(value, list):
        for inner in value:
            _integers(inner)


@schemathesis.hook
def before_call(context, case, kwargs):
    if case.meta is not None and case.meta.generation.mode.is_negative:
        return
    headers = case.headers or {}
    names = [n for n in headers if n.lower() == "idempotency-key"]
    for name in names:
        if isinstance(headers[name], str) and _HEADER_KEY.match(headers[name]):
            headers[name] = _unique(headers[name], 126)
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("submissionId"), str):
        key = body["submissionId"]
        if _HEADER_KEY.match(key):
            body["submissionId"] = key = _unique(key, 126)
        for name in names:
            if _HEADER_KEY.match(key):
                headers[name] = key
            else:
                del headers[name]
    _integers(body)
