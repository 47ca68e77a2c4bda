//! Exact decimal amounts as Fireblocks sends them (`amountStr`: up to 18 fractional digits).
//! Floats lose precision exactly where limits bite, so sums and comparisons stay in fixed point.

use std::fmt;

/// Fractional digits kept exactly.
pub const SCALE: u32 = 18;
const ONE: u128 = 10u128.pow(SCALE);

/// A non-negative amount in units of 10⁻¹⁸; the largest is about 3.4 × 10²⁰.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount(u128);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// A plain decimal string (`"10"`, `"0.000000000000000001"`): digits, at most one dot with
    /// digits on both sides, at most 18 fractional digits, no sign or exponent.
    pub fn parse(s: &str) -> Option<Self> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || (s.contains('.') && frac.is_empty()) {
            return None;
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > SCALE as usize {
            return None;
        }
        let int = int.trim_start_matches('0');
        let whole: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let frac: u128 =
            if frac.is_empty() { 0 } else { frac.parse::<u128>().ok()? * 10u128.pow(SCALE - frac.len() as u32) };
        whole.checked_mul(ONE)?.checked_add(frac).map(Amount)
    }

    pub fn from_units(units: u128) -> Self {
        Amount(units)
    }

    pub fn units(self) -> u128 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }
}

impl fmt::Display for Amount {
    /// The shortest exact form: no trailing fractional zeros, no dot for whole numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / ONE, self.0 % ONE);
        if frac == 0 {
            return write!(f, "{int}");
        }
        let frac = format!("{frac:018}");
        write!(f, "{int}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_and_prints_the_shortest_form() {
        let cases = [
            ("10", "10"),
            ("10.000000000000000000", "10"),
            ("0.000000000000000001", "0.000000000000000001"),
            ("007.50", "7.5"),
            ("0", "0"),
            ("340282366920.938463463374607431", "340282366920.938463463374607431"),
        ];
        for (input, shown) in cases {
            assert_eq!(Amount::parse(input).map(|a| a.to_string()).as_deref(), Some(shown), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_plain_amount() {
        for bad in ["", "1.", ".5", "-1", "1e5", "1,5", " 1", "0x10", "0.0000000000000000001", "1".repeat(40).as_str()]
        {
            assert_eq!(Amount::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn addition_is_exact_and_checked() {
        let a = Amount::parse("0.1").unwrap().checked_add(Amount::parse("0.2").unwrap()).unwrap();
        assert_eq!(a.to_string(), "0.3");
        assert_eq!(Amount::from_units(u128::MAX).checked_add(Amount::from_units(1)), None);
    }
}
