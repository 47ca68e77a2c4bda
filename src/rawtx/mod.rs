//! Raw transactions: what the Co-signer is asked to sign, decoded so a policy can compare it with
//! the request's description of it (`policies/lib/rawtx.rego`).
//!
//! The decoders take untrusted bytes from the network: every length is checked against what is
//! left before anything is read or allocated, so bad hex, truncated input and trailing bytes are
//! errors, never panics, and memory stays proportional to the input.
//! Amounts and integers come out as decimal strings: no floats anywhere.

pub mod btc;
pub mod eth;

/// Why bytes could not be decoded; the message is what a policy's reason shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not hex: {0}")]
    Hex(&'static str),
    #[error("truncated: the {0} runs past the end of the data")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the {1}")]
    Trailing(usize, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Hex as Fireblocks sends it: an even number of digits, either case, an optional `0x`.
pub fn from_hex(text: &str) -> Result<Vec<u8>, DecodeError> {
    let text = text.strip_prefix("0x").unwrap_or(text);
    if !text.len().is_multiple_of(2) {
        return Err(DecodeError::Hex("an odd number of digits"));
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(DecodeError::Hex("a character that is not a hex digit")),
    };
    text.as_bytes().chunks_exact(2).map(|pair| Ok(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// Lowercase hex without a prefix.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
}

/// Keccak-256 (Ethereum's hash: the original Keccak padding, not NIST SHA3-256).
pub fn keccak256(bytes: &[u8]) -> [u8; 32] {
    use sha3::Digest;
    sha3::Keccak256::digest(bytes).into()
}

/// SHA-256 of SHA-256 (Bitcoin's signature hash and Base58Check checksum).
pub fn sha256d(bytes: &[u8]) -> [u8; 32] {
    use aws_lc_rs::digest::{SHA256, digest};
    let once = digest(&SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, once.as_ref()).as_ref());
    out
}

/// An unsigned big-endian integer of any length as a decimal string (`"0"` for no bytes).
pub fn uint_to_decimal(be_bytes: &[u8]) -> String {
    // Repeated division by 10^19 keeps this exact for 256-bit values and beyond.
    const CHUNK: u128 = 10_000_000_000_000_000_000;
    let mut number: Vec<u8> = be_bytes.iter().copied().skip_while(|b| *b == 0).collect();
    let mut chunks = Vec::new();
    while !number.is_empty() {
        let mut remainder: u128 = 0;
        for byte in number.iter_mut() {
            let current = remainder << 8 | u128::from(*byte);
            *byte = (current / CHUNK) as u8;
            remainder = current % CHUNK;
        }
        chunks.push(remainder as u64);
        let zeros = number.iter().take_while(|b| **b == 0).count();
        number.drain(..zeros);
    }
    let mut text = chunks.last().map_or_else(|| "0".to_owned(), u64::to_string);
    for chunk in chunks.iter().rev().skip(1) {
        text.push_str(&format!("{chunk:019}"));
    }
    text
}

/// A cursor over untrusted bytes: every read says what it was reading, for the error.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n, what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(from_hex("0x00fFa0").unwrap(), vec![0, 255, 160]);
        assert_eq!(to_hex(&[0, 255, 160]), "00ffa0");
        assert_eq!(from_hex("").unwrap(), Vec::<u8>::new());
        assert_eq!(from_hex("abc"), Err(DecodeError::Hex("an odd number of digits")));
        assert!(from_hex("zz").is_err());
        assert!(from_hex("0x0x00").is_err());
    }

    #[test]
    fn hashes_match_known_vectors() {
        // Keccak-256("") and SHA-256(SHA-256("hello")): published test vectors.
        assert_eq!(to_hex(&keccak256(b"")), "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        assert_eq!(to_hex(&sha256d(b"hello")), "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50");
    }

    /// Every truncation, every byte replaced by 0x00, 0x7f, 0x80 or 0xff, and a byte inserted at
    /// every position of real transactions: each decoder answers, never panics. (Coverage-guided
    /// fuzzing of the same decoders: `tests/fuzz`, targets `rawtx_eth` and `rawtx_btc`.)
    #[test]
    fn mutated_transactions_never_panic_a_decoder() {
        let eth = from_hex(
            "02ef0104843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000080c0",
        )
        .unwrap();
        let call = from_hex("a9059cbb0000000000000000000000005dc69b1fbb13bafd09af88a782f0f285772ad5f8000000000000000000000000000000000000000000000000000000009502f900").unwrap();
        let btc = from_hex("0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000").unwrap();
        type Decoder = fn(&[u8]) -> bool;
        let decoders: [(&[u8], Decoder); 3] = [
            (&eth, |b| eth::decode_transaction(b).is_ok()),
            (&call, |b| eth::decode_erc20(b).is_ok()),
            (&btc, |b| btc::decode_preimage(b, btc::Network::Testnet).is_ok()),
        ];
        for (seed, decode) in decoders {
            assert!(decode(seed), "the seed decodes");
            for cut in 0..seed.len() {
                assert!(!decode(&seed[..cut]), "a truncated transaction is refused ({cut} bytes)");
            }
            for at in 0..seed.len() {
                for byte in [0x00, 0x7f, 0x80, 0xff] {
                    let mut mutant = seed.to_vec();
                    mutant[at] = byte;
                    decode(&mutant);
                    mutant.insert(at, byte);
                    decode(&mutant);
                }
            }
        }
    }

    #[test]
    fn integers_of_any_length_print_exactly() {
        assert_eq!(uint_to_decimal(&[]), "0");
        assert_eq!(uint_to_decimal(&[0, 0]), "0");
        assert_eq!(uint_to_decimal(&[0x23, 0x86, 0xf2, 0x6f, 0xc1, 0x00, 0x00]), "10000000000000000");
        assert_eq!(uint_to_decimal(&u64::MAX.to_be_bytes()), u64::MAX.to_string());
        assert_eq!(uint_to_decimal(&u128::MAX.to_be_bytes()), u128::MAX.to_string());
        assert_eq!(
            uint_to_decimal(&[0xff; 32]),
            "115792089237316195423570985008687907853269984665640564039457584007913129639935"
        );
    }
}
