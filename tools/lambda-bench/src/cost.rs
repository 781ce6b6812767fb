//! Cost per million events, from the measured figures (each function's
//! memory, invocation duration and init, requests and units per event) and
//! the public us-east-1 prices: the table beside the performance figures.
//! Free tiers and volume discounts left out: the first tier's price of
//! each line, as an account past its free tier pays it.

/// Public us-east-1 prices, read 2026-11-30 (first tier of each).
pub mod prices {
    /// HTTP API: $1.00 per million requests (first 300 million a month),
    /// metered in 512 KB increments. Source: AWS whitepaper "Best Practices
    /// for Designing Amazon API Gateway Private APIs and Private
    /// Integration", Cost optimization, table 4
    /// (docs.aws.amazon.com/whitepapers/latest/best-practices-api-gateway-private-apis-integration/cost-optimization.html),
    /// and aws.amazon.com/api-gateway/pricing/.
    pub const HTTP_API_PER_MILLION: f64 = 1.00;
    pub const HTTP_API_METERING_BYTES: u64 = 512 * 1024;

    /// Lambda: $0.20 per million requests; arm64 duration $0.0000133334 per
    /// GB-second (first 7.5 billion GB-seconds a month), billed per 1 ms,
    /// rounded up. Source: aws.amazon.com/lambda/pricing/ (the arm64 table).
    pub const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;
    pub const LAMBDA_ARM64_PER_GB_SECOND: f64 = 0.000_013_333_4;

    /// DynamoDB on-demand after the 1 November 2024 price cut: $0.625 per
    /// million write request units, $0.125 per million read request units.
    /// Source: aws.amazon.com/dynamodb/pricing/on-demand/ (the cut was
    /// announced as "50% lower on-demand throughput prices").
    pub const DYNAMODB_WRITE_UNITS_PER_MILLION: f64 = 0.625;
    pub const DYNAMODB_READ_UNITS_PER_MILLION: f64 = 0.125;

    /// SQS FIFO: $0.50 per million requests, each 64 KB chunk of a payload
    /// billed as one request. Source: aws.amazon.com/sqs/pricing/.
    pub const SQS_FIFO_PER_MILLION: f64 = 0.50;
    pub const SQS_CHUNK_BYTES: u64 = 64 * 1024;

    /// Secrets Manager: $0.05 per 10,000 API calls ($5.00 per million).
    /// Source: aws.amazon.com/secrets-manager/pricing/.
    pub const SECRETS_MANAGER_PER_MILLION: f64 = 0.05 * 100.0;
}

const MILLION: f64 = 1_000_000.0;

/// One function's part in an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Invocation {
    /// Its `MemorySize`.
    pub memory_mb: u64,
    /// One invocation's measured duration (the handler's time).
    pub duration_ms: f64,
    /// Its init, measured, billed on a cold start (a custom runtime's
    /// init is billed, as `provided.al2023` functions' always was).
    pub init_ms: f64,
    /// The share of its invocations that are cold starts (0 to 1).
    pub cold_share: f64,
    /// How many times it runs per event.
    pub per_event: f64,
}

impl Invocation {
    /// Milliseconds billed per invocation, on average: each rounded up to
    /// the next whole millisecond, a cold one with its init.
    pub fn billed_ms(&self) -> f64 {
        let warm = self.duration_ms.ceil();
        let cold = (self.init_ms + self.duration_ms).ceil();
        (1.0 - self.cold_share) * warm + self.cold_share * cold
    }

    /// GB-seconds per invocation (GB = MB / 1024, as Lambda counts).
    pub fn gb_seconds(&self) -> f64 {
        self.memory_mb as f64 / 1024.0 * self.billed_ms() / 1000.0
    }
}

/// What one event costs, in the units each line is billed by.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// "new order", "duplicate", "small event"; or the Python reference's.
    pub name: String,
    /// API Gateway requests per event, and the size of each (billed per
    /// 512 KB increment).
    pub api_requests_per_event: f64,
    pub api_request_bytes: u64,
    pub invocations: Vec<Invocation>,
    /// DynamoDB on-demand units per event, as measured (a refused
    /// conditional write is billed too).
    pub write_units_per_event: f64,
    pub read_units_per_event: f64,
    /// SQS FIFO requests per event, and each one's payload (billed per
    /// 64 KB chunk).
    pub sqs_fifo_requests_per_event: f64,
    pub sqs_payload_bytes: u64,
    /// Secrets Manager calls per event: a cold start's or a cache
    /// refresh's calls, amortised over the events between them.
    pub secrets_calls_per_event: f64,
}

/// One line of the bill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub item: Item,
    /// Dollars per million events.
    pub dollars: f64,
}

/// The bill's lines, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    ApiGateway,
    LambdaRequests,
    LambdaDuration,
    DynamoDbWrites,
    DynamoDbReads,
    SqsFifo,
    SecretsManager,
}

impl Item {
    pub const ALL: [Item; 7] = [
        Item::ApiGateway,
        Item::LambdaRequests,
        Item::LambdaDuration,
        Item::DynamoDbWrites,
        Item::DynamoDbReads,
        Item::SqsFifo,
        Item::SecretsManager,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Item::ApiGateway => "API Gateway",
            Item::LambdaRequests => "Lambda requests",
            Item::LambdaDuration => "Lambda GB-s (arm64)",
            Item::DynamoDbWrites => "DynamoDB writes",
            Item::DynamoDbReads => "DynamoDB reads",
            Item::SqsFifo => "SQS FIFO",
            Item::SecretsManager => "Secrets Manager",
        }
    }
}

/// A scenario's cost per million events, line by line.
#[derive(Debug, Clone, PartialEq)]
pub struct Costed {
    pub scenario: String,
    pub lines: Vec<Line>,
}

impl Costed {
    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.dollars).sum()
    }

    /// The largest line (the first of equals).
    pub fn dominant(&self) -> Line {
        self.lines
            .iter()
            .copied()
            .fold(None, |best: Option<Line>, l| match best {
                Some(b) if b.dollars >= l.dollars => Some(b),
                _ => Some(l),
            })
            .expect("a bill has lines")
    }

    pub fn line(&self, item: Item) -> f64 {
        self.lines
            .iter()
            .find(|l| l.item == item)
            .map_or(0.0, |l| l.dollars)
    }
}

/// How many billed chunks a payload of `bytes` is (at least one).
fn chunks(bytes: u64, chunk: u64) -> f64 {
    bytes.div_ceil(chunk).max(1) as f64
}

/// A scenario's cost per million events.
pub fn per_million(scenario: &Scenario) -> Costed {
    use prices::*;
    let events = MILLION;
    let api_requests = scenario.api_requests_per_event
        * chunks(scenario.api_request_bytes, HTTP_API_METERING_BYTES);
    let lambda_requests: f64 = scenario.invocations.iter().map(|i| i.per_event).sum();
    let gb_seconds: f64 = scenario
        .invocations
        .iter()
        .map(|i| i.per_event * i.gb_seconds())
        .sum();
    let sqs_requests =
        scenario.sqs_fifo_requests_per_event * chunks(scenario.sqs_payload_bytes, SQS_CHUNK_BYTES);
    let priced = |count_per_event: f64, price_per_million: f64| {
        count_per_event * events / MILLION * price_per_million
    };
    let lines = vec![
        Line {
            item: Item::ApiGateway,
            dollars: priced(api_requests, HTTP_API_PER_MILLION),
        },
        Line {
            item: Item::LambdaRequests,
            dollars: priced(lambda_requests, LAMBDA_REQUESTS_PER_MILLION),
        },
        Line {
            item: Item::LambdaDuration,
            dollars: gb_seconds * events * LAMBDA_ARM64_PER_GB_SECOND,
        },
        Line {
            item: Item::DynamoDbWrites,
            dollars: priced(
                scenario.write_units_per_event,
                DYNAMODB_WRITE_UNITS_PER_MILLION,
            ),
        },
        Line {
            item: Item::DynamoDbReads,
            dollars: priced(
                scenario.read_units_per_event,
                DYNAMODB_READ_UNITS_PER_MILLION,
            ),
        },
        Line {
            item: Item::SqsFifo,
            dollars: priced(sqs_requests, SQS_FIFO_PER_MILLION),
        },
        Line {
            item: Item::SecretsManager,
            dollars: priced(
                scenario.secrets_calls_per_event,
                SECRETS_MANAGER_PER_MILLION,
            ),
        },
    ];
    Costed {
        scenario: scenario.name.clone(),
        lines,
    }
}

/// A Markdown table: a row per scenario, each line in dollars per million
/// events, the total and the line that dominates.
pub fn table(rows: &[Costed]) -> String {
    let mut out = String::from("| per million events |");
    for item in Item::ALL {
        out += &format!(" {} |", item.label());
    }
    out += " total | dominant |\n|---|";
    out += &"---:|".repeat(Item::ALL.len() + 1);
    out += "---|\n";
    for row in rows {
        out += &format!("| {} |", row.scenario);
        for item in Item::ALL {
            out += &format!(" {} |", dollars(row.line(item)));
        }
        let dominant = row.dominant();
        let share = if row.total() > 0.0 {
            dominant.dollars / row.total() * 100.0
        } else {
            0.0
        };
        out += &format!(
            " {} | {} ({share:.0}%) |\n",
            dollars(row.total()),
            dominant.item.label()
        );
    }
    out
}

/// Dollars with the precision small lines need: `$6.25`, `$0.0067`.
fn dollars(value: f64) -> String {
    if value == 0.0 {
        "$0".into()
    } else if value >= 0.1 {
        format!("${value:.2}")
    } else {
        format!("${value:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    fn empty(name: &str) -> Scenario {
        Scenario {
            name: name.into(),
            api_requests_per_event: 0.0,
            api_request_bytes: 0,
            invocations: vec![],
            write_units_per_event: 0.0,
            read_units_per_event: 0.0,
            sqs_fifo_requests_per_event: 0.0,
            sqs_payload_bytes: 0,
            secrets_calls_per_event: 0.0,
        }
    }

    fn warm(memory_mb: u64, duration_ms: f64) -> Invocation {
        Invocation {
            memory_mb,
            duration_ms,
            init_ms: 0.0,
            cold_share: 0.0,
            per_event: 1.0,
        }
    }

    #[test]
    fn a_million_events_of_one_write_unit_cost_sixty_two_and_a_half_cents() {
        let mut s = empty("one write");
        s.write_units_per_event = 1.0;
        let costed = per_million(&s);
        assert!(close(costed.line(Item::DynamoDbWrites), 0.625));
        assert!(close(costed.total(), 0.625));
        s.read_units_per_event = 0.5;
        assert!(close(per_million(&s).line(Item::DynamoDbReads), 0.0625));
    }

    #[test]
    fn duration_is_billed_rounded_up_to_the_millisecond() {
        assert_eq!(warm(128, 1.2).billed_ms(), 2.0);
        assert_eq!(warm(128, 2.0).billed_ms(), 2.0);
        assert_eq!(warm(128, 0.01).billed_ms(), 1.0);
        // 2 ms at 128 MB: 0.125 GB × 0.002 s = 0.00025 GB-s an event;
        // 250 GB-s a million, at $0.0000133334.
        let mut s = empty("tiny");
        s.invocations = vec![warm(128, 1.2)];
        let costed = per_million(&s);
        assert!(close(
            costed.line(Item::LambdaDuration),
            250.0 * 0.000_013_333_4
        ));
        assert!(close(costed.line(Item::LambdaRequests), 0.20));
    }

    #[test]
    fn a_cold_start_bills_init_and_handler_together_rounded_once() {
        let cold = Invocation {
            memory_mb: 1024,
            duration_ms: 0.4,
            init_ms: 10.3,
            cold_share: 1.0,
            per_event: 1.0,
        };
        assert_eq!(cold.billed_ms(), 11.0);
        let mixed = Invocation {
            cold_share: 0.25,
            ..cold
        };
        assert_eq!(mixed.billed_ms(), 0.75 * 1.0 + 0.25 * 11.0);
        assert!(close(mixed.gb_seconds(), 3.5 / 1000.0));
    }

    #[test]
    fn api_requests_are_metered_per_512_kb_and_sqs_per_64_kb() {
        let mut s = empty("big");
        s.api_requests_per_event = 1.0;
        s.api_request_bytes = 512 * 1024;
        assert!(close(per_million(&s).line(Item::ApiGateway), 1.0));
        s.api_request_bytes = 512 * 1024 + 1;
        assert!(close(per_million(&s).line(Item::ApiGateway), 2.0));
        s.sqs_fifo_requests_per_event = 1.0;
        s.sqs_payload_bytes = 64 * 1024;
        assert!(close(per_million(&s).line(Item::SqsFifo), 0.50));
        s.sqs_payload_bytes = 64 * 1024 + 1;
        assert!(close(per_million(&s).line(Item::SqsFifo), 1.00));
        s.sqs_payload_bytes = 0;
        assert!(
            close(per_million(&s).line(Item::SqsFifo), 0.50),
            "a request is at least one chunk"
        );
    }

    #[test]
    fn secrets_manager_calls_cost_five_dollars_a_million() {
        let mut s = empty("secrets");
        s.secrets_calls_per_event = 1.0 / 1000.0;
        assert!(close(per_million(&s).line(Item::SecretsManager), 0.005));
    }

    /// A new 9.3 KB order, by hand: one API request $1.00, one Lambda
    /// request $0.20, 4 ms at 128 MB = 500 GB-s = $0.0066667, ten write
    /// units $6.25: $7.4566667, the writes dominating.
    #[test]
    fn a_new_orders_bill_adds_up_and_names_its_largest_line() {
        let s = Scenario {
            api_requests_per_event: 1.0,
            api_request_bytes: 9_300,
            invocations: vec![warm(128, 3.4)],
            write_units_per_event: 10.0,
            ..empty("new order")
        };
        let costed = per_million(&s);
        assert!(close(
            costed.total(),
            1.0 + 0.20 + 500.0 * 0.000_013_333_4 + 6.25
        ));
        assert_eq!(costed.dominant().item, Item::DynamoDbWrites);
        let table = table(&[costed]);
        assert!(table.contains("| new order | $1.00 | $0.20 | $0.0067 | $6.25 | $0 | $0 | $0 | $7.46 | DynamoDB writes (84%) |"), "{table}");
    }
}
