//! The floor `lambda-bench` measures the functions against: the smallest
//! `lambda_runtime` function, answering every event with status 200, built
//! with the same release profile (and tokio runtime) as the functions.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200}))
    }))
    .await
}
