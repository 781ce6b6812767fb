"""Revel's `order.finalized` webhook as a Python developer would receive it:
the reference `make bench-lambda` measures the Rust receivers against.

An API Gateway HTTP API (payload 2.0) event in. `X-Revel-Signature` is the
hex HMAC-SHA1 of the raw body under the secret of the instance named in
`X-Revel-Instance`, from the Secrets Manager document the Rust receivers
read (read at init, cached five minutes as theirs is). The order is sent
once to the jobs FIFO queue, made idempotent by Powertools on the key the
Rust receiver stores it under: the sender's `X-Revel-Event-Id`, else the
order's uuid and `updated_date`. Answers 200 {"status": "accepted"} (a
repeat gets the stored answer), 401 for a bad signature, 400 for a body
without an order.

Run as Lambda's Python images run a handler: `python -m awslambdaric
handler.lambda_handler` with AWS_LAMBDA_RUNTIME_API set.
"""

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime, timedelta, timezone

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)

EVENT_TYPE = "order.finalized"
SECRETS_ID = os.environ["REVEL_WEBHOOK_SECRETS_ID"]
SECRETS_TTL = 300
QUEUE_URL = os.environ["JOBS_QUEUE_URL"]
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

logger = Logger(service="revel-order-finalized")
sqs = boto3.client("sqs")
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
config = IdempotencyConfig(
    event_key_jmespath="key",
    expires_after_seconds=86_400 * int(os.environ.get("EVENT_RETENTION_DAYS", "30")),
)

# At init, as the Rust receivers load theirs.
parameters.get_secret(SECRETS_ID, transform="json", max_age=SECRETS_TTL)


def webhook_secrets(instance):
    """The instance's secrets: one, or two during a rotation."""
    document = parameters.get_secret(SECRETS_ID, transform="json", max_age=SECRETS_TTL)
    entry = document.get(instance)
    if isinstance(entry, dict):
        entry = entry.get("webhook")
    if isinstance(entry, str):
        entry = [entry]
    return [s for s in entry or [] if isinstance(s, str) and s]


def is_signed(body, signature, secrets):
    claimed = signature.strip().lower().encode()
    return any(
        hmac.compare_digest(hmac.new(s.encode(), body, hashlib.sha1).hexdigest().encode(), claimed)
        for s in secrets
    )


def event_key(instance, headers, order):
    """The Rust receiver's key: `id:` the sender's event id, else `biz:` uuid@µs of updated_date."""
    prefix = f"revel:{instance}:{EVENT_TYPE}"
    if event_id := headers.get("x-revel-event-id"):
        return f"{prefix}:id:{event_id}"
    info = order["orderInfo"]
    updated = datetime.fromisoformat(info["updated_date"])
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=timezone.utc)
    return f"{prefix}:biz:{info['uuid']}@{(updated - EPOCH) // timedelta(microseconds=1)}"


@idempotent_function(data_keyword_argument="delivery", config=config, persistence_store=persistence)
def accept(delivery):
    sqs.send_message(
        QueueUrl=QUEUE_URL,
        MessageBody=json.dumps(delivery),
        MessageGroupId=delivery["group"],
        MessageDeduplicationId=hashlib.sha256(delivery["key"].encode()).hexdigest(),
    )
    logger.info("event accepted", extra={"event_key": delivery["key"]})
    return {"status": "accepted"}


def respond(status, body):
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(body),
    }


@logger.inject_lambda_context
def lambda_handler(event, context):
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    headers = event.get("headers") or {}  # HTTP API gives them lower-cased
    instance = headers.get("x-revel-instance", "")
    if not is_signed(raw, headers.get("x-revel-signature", ""), webhook_secrets(instance)):
        return respond(401, {"status": "unauthorized"})
    try:
        order = json.loads(raw)
        key = event_key(instance, headers, order)
        group = f"revel:{instance}:order:{order['orderInfo']['uuid']}"
    except (ValueError, KeyError, TypeError):
        return respond(400, {"status": "malformed"})
    config.register_lambda_context(context)
    delivery = {"key": key, "group": group, "instance": instance, "order": order}
    return respond(200, accept(delivery=delivery))
