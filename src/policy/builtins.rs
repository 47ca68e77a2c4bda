//! Builtins cosigner-guard adds to Rego: exact arithmetic on the decimal strings Fireblocks sends
//! (`amountStr` has up to 18 fractional digits; floats lose precision exactly where limits bite).
//!
//! - `decimal.valid(s)`: `s` is a plain non-negative decimal string (`"0.01"`, `"10"`).
//! - `decimal.cmp(a, b)`: `-1`, `0` or `1`; undefined unless both are valid.
//! - `decimal.sum(list)`: the exact sum as a decimal string; undefined unless all are valid and
//!   have at most 18 fractional digits.
//! - `decimal.to_units(s, decimals)`: `s` in the smallest unit of a currency with that many
//!   decimals, as an integer string (`"0.01"`, 18 → `"10000000000000000"`); undefined unless `s`
//!   is valid and has no more fractional digits than that.
//!
//! The `velocity.*` builtins (limits over time) and the raw-transaction builtins are registered
//! here too; see [`super::velocity`] and [`super::rawtx`].

use std::cmp::Ordering;

use regorus::{Engine, Value};

use crate::decimal::Amount;

/// Every function [`register`] adds (for `check`, which refuses calls to functions that exist nowhere).
pub const EXTENSIONS: &[&str] = &[
    "decimal.valid",
    "decimal.cmp",
    "decimal.sum",
    "decimal.to_units",
    "decimal.from_number",
    "velocity.sum",
    "velocity.count",
    "time.now_ns",
    "eth.keccak256",
    "btc.sha256d",
    "eth.decode_tx",
    "eth.decode_erc20",
    "btc.decode_preimage",
    "eth.valid_address",
    "btc.valid_address",
    "transfer.view",
    "transfer.request",
];

pub fn register(engine: &mut Engine) -> anyhow::Result<()> {
    engine.add_extension(
        "decimal.valid".into(),
        1,
        Box::new(super::velocity::recorded("decimal.valid", |args: Vec<Value>| {
            Ok(Value::from(parse(&args[0]).is_some()))
        })),
    )?;
    engine.add_extension(
        "decimal.cmp".into(),
        2,
        Box::new(super::velocity::recorded("decimal.cmp", |args: Vec<Value>| {
            Ok(match (parse(&args[0]), parse(&args[1])) {
                (Some(a), Some(b)) => Value::from(a.cmp(&b) as i64),
                _ => Value::Undefined,
            })
        })),
    )?;
    engine.add_extension(
        "decimal.sum".into(),
        1,
        Box::new(super::velocity::recorded("decimal.sum", |args: Vec<Value>| {
            Ok(sum(&args[0]).map_or(Value::Undefined, Value::from))
        })),
    )?;
    engine.add_extension(
        "decimal.to_units".into(),
        2,
        Box::new(super::velocity::recorded("decimal.to_units", |args: Vec<Value>| {
            Ok(to_units(&args[0], &args[1]).map_or(Value::Undefined, Value::from))
        })),
    )?;
    engine.add_extension(
        "decimal.from_number".into(),
        1,
        Box::new(super::velocity::recorded("decimal.from_number", |args: Vec<Value>| {
            Ok(from_number(&args[0]).map_or(Value::Undefined, Value::from))
        })),
    )?;
    super::velocity::register(engine)?;
    super::rawtx::register(engine)
}

/// A non-negative decimal: integer digits without leading zeros, fraction without trailing zeros.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    int: &'a str,
    frac: &'a str,
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn parse(value: &Value) -> Option<Decimal<'_>> {
    let Value::String(s) = value else { return None };
    let s: &str = s.as_ref();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
        return None;
    }
    Some(Decimal { int: int.trim_start_matches('0'), frac: frac.trim_end_matches('0') })
}

fn to_units(amount: &Value, decimals: &Value) -> Option<String> {
    let decimal = parse(amount)?;
    let decimals = decimals.as_u64().ok().filter(|d| *d <= 77)? as usize;
    if decimal.frac.len() > decimals {
        return None;
    }
    let units = format!("{}{}{}", decimal.int, decimal.frac, "0".repeat(decimals - decimal.frac.len()));
    let units = units.trim_start_matches('0');
    Some(if units.is_empty() { "0".into() } else { units.into() })
}

/// The decimal a non-negative JSON number was written as: its shortest form that reads back as
/// the same double (`333.33`, not `333.329999999999984`), so sums of amounts such as `amountUSD`
/// are exact over what was received rather than float sums. Exponent forms are refused.
fn from_number(value: &Value) -> Option<String> {
    let Value::Number(_) = value else { return None };
    let text = serde_json::to_string(value).ok()?;
    Amount::parse(&text).map(|amount| amount.to_string())
}

fn sum(list: &Value) -> Option<String> {
    let Value::Array(items) = list else { return None };
    let mut total = Amount::ZERO;
    for item in items.iter() {
        let Value::String(s) = item else { return None };
        total = total.checked_add(Amount::parse(s)?)?;
    }
    Some(total.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::from(v)
    }

    #[test]
    fn every_listed_extension_is_registered() {
        let mut engine = Engine::new();
        register(&mut engine).expect("registers");
        for name in EXTENSIONS {
            // Registering a name twice fails: each listed one is taken.
            let again = engine.add_extension(name.to_string(), 0, Box::new(|_: Vec<Value>| Ok(Value::Null)));
            assert!(again.is_err(), "{name} is not registered");
        }
    }

    #[test]
    fn comparison_is_exact_at_18_decimals() {
        let cases = [
            ("10", "10.000000000000000000", Ordering::Equal),
            ("10.000000000000000001", "10", Ordering::Greater),
            ("9.999999999999999999", "10", Ordering::Less),
            ("007.5", "8", Ordering::Less),
            ("100", "99.99", Ordering::Greater),
            ("0", "0.0", Ordering::Equal),
        ];
        for (a, b, want) in cases {
            assert_eq!(parse(&s(a)).unwrap().cmp(&parse(&s(b)).unwrap()), want, "{a} vs {b}");
        }
    }

    #[test]
    fn only_plain_non_negative_decimals_parse() {
        for bad in ["", "1.", ".5", "-1", "1e5", "1,5", " 1", "0x10"] {
            assert!(parse(&s(bad)).is_none(), "{bad:?}");
        }
        assert!(parse(&Value::from(5)).is_none(), "a number is not a decimal string");
    }

    #[test]
    fn amounts_convert_to_smallest_units_exactly() {
        let units = |a: &str, d: u64| to_units(&s(a), &Value::from(d));
        assert_eq!(units("0.010000000000000000", 18).as_deref(), Some("10000000000000000"));
        assert_eq!(units("0.00087600", 8).as_deref(), Some("87600"));
        assert_eq!(units("150000", 6).as_deref(), Some("150000000000"));
        assert_eq!(units("0", 6).as_deref(), Some("0"));
        assert_eq!(units("0.0000001", 6), None, "finer than the currency's smallest unit");
        assert_eq!(units("1e5", 6), None);
        assert_eq!(to_units(&s("1"), &s("6")), None, "decimals must be a number");
    }

    #[test]
    fn numbers_become_the_decimals_they_were_written_as() {
        let number = |text: &str| Value::from_json_str(text).expect("a number");
        assert_eq!(from_number(&number("333.33")).as_deref(), Some("333.33"));
        assert_eq!(from_number(&number("1000")).as_deref(), Some("1000"));
        assert_eq!(from_number(&number("0.1")).as_deref(), Some("0.1"));
        assert_eq!(from_number(&number("-1")), None);
        assert_eq!(from_number(&s("1")), None, "a string is not a number");
        let usd = Value::from(
            ["691.58", "290.58", "17.84"].map(|n| Value::from(from_number(&number(n)).unwrap_or_default())).to_vec(),
        );
        assert_eq!(sum(&usd).as_deref(), Some("1000"), "a float sum gives 1000.0000000000001");
    }

    #[test]
    fn sums_are_exact() {
        let list = Value::from(vec![s("0.1"), s("0.2"), s("0.000000000000000001"), s("10")]);
        assert_eq!(sum(&list).as_deref(), Some("10.300000000000000001"));
        assert_eq!(sum(&Value::from(vec![s("1"), s("x")])), None);
        assert_eq!(sum(&Value::from(Vec::<Value>::new())).as_deref(), Some("0"));
    }
}
