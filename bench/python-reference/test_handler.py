"""The Python reference does what the bench counts on: run with
`.venv/bin/python -m unittest discover -s bench/python-reference`.

moto stands in for AWS; the event is the bundle's signed sample.
"""

import copy
import hashlib
import hmac
import importlib
import json
import os
import pathlib
import sys
import unittest

import boto3
from moto import mock_aws

HERE = pathlib.Path(__file__).resolve().parent
SAMPLE = json.loads((HERE / "../../events/revel-order-finalized.json").read_text())
SECRET = "demo-webhook-secret"


class Context:
    function_name = "python-reference"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:python-reference"
    aws_request_id = "test"

    @staticmethod
    def get_remaining_time_in_millis():
        return 10_000


def signed(event, body=None):
    event = copy.deepcopy(event)
    if body is not None:
        event["body"] = body
    event["headers"]["x-revel-signature"] = hmac.new(
        SECRET.encode(), event["body"].encode(), hashlib.sha1
    ).hexdigest()
    return event


@mock_aws
class ReferenceTest(unittest.TestCase):
    def setUp(self):
        os.environ.update(
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            REVEL_WEBHOOK_SECRETS_ID="revel",
            IDEMPOTENCY_TABLE="idempotency",
        )
        boto3.client("secretsmanager").create_secret(
            Name="revel", SecretString=json.dumps({"demo": {"webhook": [SECRET]}})
        )
        boto3.client("dynamodb").create_table(
            TableName="idempotency",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        self.sqs = boto3.client("sqs")
        self.queue = self.sqs.create_queue(
            QueueName="jobs.fifo", Attributes={"FifoQueue": "true"}
        )["QueueUrl"]
        os.environ["JOBS_QUEUE_URL"] = self.queue
        sys.path.insert(0, str(HERE))
        # Imported afresh in each test: its clients and secret cache are made at init.
        sys.modules.pop("handler", None)
        self.handler = importlib.import_module("handler")

    def tearDown(self):
        sys.path.remove(str(HERE))
        from aws_lambda_powertools.utilities import parameters

        parameters.clear_caches()

    def queued(self):
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue, AttributeNames=["ApproximateNumberOfMessages"]
        )
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def test_a_signed_order_is_queued_once_and_its_repeat_gets_the_stored_answer(self):
        event = signed(SAMPLE)
        first = self.handler.lambda_handler(event, Context())
        again = self.handler.lambda_handler(event, Context())
        self.assertEqual((first["statusCode"], json.loads(first["body"])), (200, {"status": "accepted"}))
        self.assertEqual(again, first)
        self.assertEqual(self.queued(), 1)

    def test_a_bad_signature_is_refused_and_nothing_is_queued(self):
        event = copy.deepcopy(SAMPLE)
        event["headers"]["x-revel-signature"] = "0" * 40
        self.assertEqual(self.handler.lambda_handler(event, Context())["statusCode"], 401)
        event["headers"]["x-revel-instance"] = "elsewhere"
        self.assertEqual(self.handler.lambda_handler(signed(event), Context())["statusCode"], 401)
        self.assertEqual(self.queued(), 0)

    def test_the_key_is_the_rust_receivers_the_senders_event_id_first(self):
        order = json.loads(SAMPLE["body"])
        self.assertEqual(
            self.handler.event_key("demo", {}, order),
            "revel:demo:order.finalized:biz:c3d0ad74-1737-42c3-a352-4a45449a67af@1460543359000000",
        )
        order["orderInfo"]["updated_date"] = "2016-04-13T12:29:19.5+02:00"
        self.assertEqual(
            self.handler.event_key("demo", {}, order),
            "revel:demo:order.finalized:biz:c3d0ad74-1737-42c3-a352-4a45449a67af@1460543359500000",
        )
        self.assertEqual(
            self.handler.event_key("demo", {"x-revel-event-id": "ev-9"}, order),
            "revel:demo:order.finalized:id:ev-9",
        )

    def test_a_signed_body_without_an_order_is_malformed(self):
        answer = self.handler.lambda_handler(signed(SAMPLE, body='{"orderInfo": {}}'), Context())
        self.assertEqual(answer["statusCode"], 400)


if __name__ == "__main__":
    unittest.main()
