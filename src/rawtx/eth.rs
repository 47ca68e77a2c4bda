//! Ethereum: the unsigned transaction the Co-signer signs (legacy, EIP-2930 or EIP-1559), and the
//! ERC-20 calls a token transfer carries in its data.

use alloy_rlp::Header;
use serde::Serialize;

use super::{DecodeError, Reader, to_hex, uint_to_decimal};

/// An unsigned transaction. Integers are decimal strings; addresses and data `0x`-prefixed
/// lowercase hex; `to` is `""` for a contract creation, `chainId` `null` for a legacy transaction
/// signed without EIP-155 replay protection.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transaction {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub chain_id: Option<String>,
    pub nonce: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gas_price: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_priority_fee_per_gas: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fee_per_gas: Option<String>,
    pub gas_limit: String,
    pub to: String,
    pub value: String,
    pub data: String,
    /// How many entries the access list has (EIP-2930 and EIP-1559).
    pub access_list_entries: usize,
}

/// The unsigned transaction in `bytes`: the first byte tells the type (EIP-2718), a list is legacy.
pub fn decode_transaction(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    match bytes.first() {
        None => Err(DecodeError::Truncated("transaction")),
        Some(0x01) => typed(&bytes[1..], "eip2930"),
        Some(0x02) => typed(&bytes[1..], "eip1559"),
        Some(0xc0..=0xff) => legacy(bytes),
        Some(other) => Err(DecodeError::Invalid(format!("unknown transaction type 0x{other:02x}"))),
    }
}

fn legacy(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    let mut fields = Fields::new(bytes)?;
    let nonce = fields.uint("nonce")?;
    let gas_price = fields.uint("gasPrice")?;
    let gas_limit = fields.uint("gasLimit")?;
    let to = fields.address()?;
    let value = fields.uint("value")?;
    let data = fields.bytes("data")?;
    // EIP-155: the chain id and two zeros take the signature's place; without them, no chain id.
    let chain_id = if fields.is_empty() {
        None
    } else {
        let chain_id = fields.uint("chainId")?;
        if fields.uint("r")? != "0" || fields.uint("s")? != "0" {
            return Err(DecodeError::Invalid("a signed transaction, not the unsigned one the Co-signer signs".into()));
        }
        Some(chain_id)
    };
    fields.finish()?;
    Ok(Transaction {
        kind: "legacy",
        chain_id,
        nonce,
        gas_price: Some(gas_price),
        max_priority_fee_per_gas: None,
        max_fee_per_gas: None,
        gas_limit,
        to,
        value,
        data,
        access_list_entries: 0,
    })
}

fn typed(bytes: &[u8], kind: &'static str) -> Result<Transaction, DecodeError> {
    let mut fields = Fields::new(bytes)?;
    let chain_id = Some(fields.uint("chainId")?);
    let nonce = fields.uint("nonce")?;
    let (gas_price, max_priority_fee_per_gas, max_fee_per_gas) = if kind == "eip1559" {
        (None, Some(fields.uint("maxPriorityFeePerGas")?), Some(fields.uint("maxFeePerGas")?))
    } else {
        (Some(fields.uint("gasPrice")?), None, None)
    };
    let gas_limit = fields.uint("gasLimit")?;
    let to = fields.address()?;
    let value = fields.uint("value")?;
    let data = fields.bytes("data")?;
    let access_list_entries = fields.access_list()?;
    fields.finish()?;
    Ok(Transaction {
        kind,
        chain_id,
        nonce,
        gas_price,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas_limit,
        to,
        value,
        data,
        access_list_entries,
    })
}

/// The fields of one RLP list, read in order.
struct Fields<'a> {
    rest: &'a [u8],
}

fn rlp_error(what: &str, error: alloy_rlp::Error) -> DecodeError {
    DecodeError::Invalid(format!("{what}: {error}"))
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut buf = bytes;
        let rest = Header::decode_bytes(&mut buf, true).map_err(|e| rlp_error("the transaction's list", e))?;
        if !buf.is_empty() {
            return Err(DecodeError::Trailing(buf.len(), "transaction"));
        }
        Ok(Self { rest })
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.rest.is_empty() {
            return Err(DecodeError::Invalid(format!("the transaction ends before its {what}")));
        }
        Header::decode_bytes(&mut self.rest, false).map_err(|e| rlp_error(what, e))
    }

    /// An RLP integer: big-endian, no leading zero byte (zero is the empty string).
    fn uint(&mut self, what: &str) -> Result<String, DecodeError> {
        let bytes = self.string(what)?;
        if bytes.first() == Some(&0) {
            return Err(DecodeError::Invalid(format!("{what} has a leading zero byte")));
        }
        if bytes.len() > 32 {
            return Err(DecodeError::Invalid(format!("{what} is longer than 256 bits")));
        }
        Ok(uint_to_decimal(bytes))
    }

    fn bytes(&mut self, what: &str) -> Result<String, DecodeError> {
        Ok(format!("0x{}", to_hex(self.string(what)?)))
    }

    fn address(&mut self) -> Result<String, DecodeError> {
        match self.string("to")? {
            [] => Ok(String::new()),
            address if address.len() == 20 => Ok(format!("0x{}", to_hex(address))),
            other => Err(DecodeError::Invalid(format!("to is {} bytes long, not an address (20)", other.len()))),
        }
    }

    /// The access list is counted, not kept: checks that read it can come later.
    fn access_list(&mut self) -> Result<usize, DecodeError> {
        if self.rest.is_empty() {
            return Err(DecodeError::Invalid("the transaction ends before its accessList".into()));
        }
        let mut list = Header::decode_bytes(&mut self.rest, true).map_err(|e| rlp_error("accessList", e))?;
        let mut entries = 0;
        while !list.is_empty() {
            Header::decode_bytes(&mut list, true).map_err(|e| rlp_error("an accessList entry", e))?;
            entries += 1;
        }
        Ok(entries)
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid("the transaction has more fields than its type allows (is it signed?)".into()))
        }
    }
}

/// An ERC-20 call, from a transaction's data. Amounts are decimal strings of the token's
/// smallest unit; addresses `0x`-prefixed lowercase hex.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum Erc20Call {
    Transfer { to: String, amount: String },
    TransferFrom { from: String, to: String, amount: String },
    Approve { spender: String, amount: String },
}

/// `transfer(address,uint256)`, `transferFrom(address,address,uint256)`, `approve(address,uint256)`:
/// the selector, then exactly its ABI words.
pub fn decode_erc20(data: &[u8]) -> Result<Erc20Call, DecodeError> {
    let mut reader = Reader::new(data);
    let selector: [u8; 4] = reader.array("function selector")?;
    let call = match selector {
        [0xa9, 0x05, 0x9c, 0xbb] => {
            Erc20Call::Transfer { to: word_address(&mut reader)?, amount: word_uint(&mut reader)? }
        }
        [0x23, 0xb8, 0x72, 0xdd] => Erc20Call::TransferFrom {
            from: word_address(&mut reader)?,
            to: word_address(&mut reader)?,
            amount: word_uint(&mut reader)?,
        },
        [0x09, 0x5e, 0xa7, 0xb3] => {
            Erc20Call::Approve { spender: word_address(&mut reader)?, amount: word_uint(&mut reader)? }
        }
        other => {
            return Err(DecodeError::Invalid(format!(
                "selector 0x{} is not ERC-20 transfer, transferFrom or approve",
                to_hex(&other)
            )));
        }
    };
    reader.finish("ERC-20 call")?;
    Ok(call)
}

fn word_address(reader: &mut Reader) -> Result<String, DecodeError> {
    let word: [u8; 32] = reader.array("address argument")?;
    if word[..12].iter().any(|b| *b != 0) {
        return Err(DecodeError::Invalid("an address argument has bits above its 160".into()));
    }
    Ok(format!("0x{}", to_hex(&word[12..])))
}

fn word_uint(reader: &mut Reader) -> Result<String, DecodeError> {
    Ok(uint_to_decimal(&reader.array::<32>("amount argument")?))
}

/// Whether `address` is an Ethereum address: `0x` and 40 hex digits, all one case or with a
/// correct EIP-55 checksum (a mixed-case address with a wrong one is a typo, not an address).
pub fn valid_address(address: &str) -> bool {
    let Some(hex) = address.strip_prefix("0x") else { return false };
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let lower = hex.to_ascii_lowercase();
    if hex == lower || hex == hex.to_ascii_uppercase() {
        return true;
    }
    let hash = super::keccak256(lower.as_bytes());
    hex.bytes().enumerate().all(|(i, b)| {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        !b.is_ascii_alphabetic() || b.is_ascii_uppercase() == (nibble >= 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethereum_addresses_need_forty_hex_digits_and_a_right_checksum_when_mixed_case() {
        assert!(valid_address("0x5dC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"), "the documented address, checksummed");
        assert!(valid_address("0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8"));
        assert!(!valid_address("0x5DC69B1Fbb13Bafd09af88a782F0F285772Ad5f8"), "one letter's case off");
        for bad in
            ["0xabc", "hello", "5dc69b1fbb13bafd09af88a782f0f285772ad5f8", "0x5dc69b1fbb13bafd09af88a782f0f285772ad5fg"]
        {
            assert!(!valid_address(bad), "{bad}");
        }
    }
    use crate::rawtx::{from_hex, keccak256};

    /// The Fireblocks documentation's example: 0.01 ETH on mainnet, EIP-1559.
    const DOCUMENTED: &str =
        "02ef0104843b9aca008506a0c1987d825208945dc69b1fbb13bafd09af88a782f0f285772ad5f8872386f26fc1000080c0";

    #[test]
    fn decodes_the_documented_eip1559_transaction_and_its_hash() {
        let bytes = from_hex(DOCUMENTED).unwrap();
        assert_eq!(to_hex(&keccak256(&bytes)), "77b4e74099ce90c08503c0e0bb6e672dbe1c5e3e127ce333bf22eb581cd3f6ce");
        let tx = decode_transaction(&bytes).unwrap();
        assert_eq!(tx.kind, "eip1559");
        assert_eq!(tx.chain_id.as_deref(), Some("1"));
        assert_eq!(tx.nonce, "4");
        assert_eq!(tx.max_priority_fee_per_gas.as_deref(), Some("1000000000"));
        assert_eq!(tx.max_fee_per_gas.as_deref(), Some("28466845821"));
        assert_eq!(tx.gas_limit, "21000");
        assert_eq!(tx.to, "0x5dc69b1fbb13bafd09af88a782f0f285772ad5f8");
        assert_eq!(tx.value, "10000000000000000");
        assert_eq!(tx.data, "0x");
        assert_eq!(tx.access_list_entries, 0);
    }

    #[test]
    fn decodes_legacy_with_and_without_eip155() {
        // [nonce 9, gasPrice 20 gwei, gas 21000, to 0x35…35, 1 ETH, no data, chain 1, 0, 0]: EIP-155's example.
        let eip155 =
            from_hex("ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080")
                .unwrap();
        let tx = decode_transaction(&eip155).unwrap();
        assert_eq!((tx.kind, tx.chain_id.as_deref(), tx.nonce.as_str()), ("legacy", Some("1"), "9"));
        assert_eq!((tx.gas_price.as_deref(), tx.value.as_str()), (Some("20000000000"), "1000000000000000000"));
        assert_eq!(to_hex(&keccak256(&eip155)), "daf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53");
        let pre155 =
            from_hex("e9098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080").unwrap();
        assert_eq!(decode_transaction(&pre155).unwrap().chain_id, None);
    }

    #[test]
    fn decodes_eip2930_with_an_access_list() {
        // chain 5, nonce 0, gasPrice 1, gas 21000, to, value 1, data 0x, accessList [[addr, []]].
        let body = "f85705800182520894353535353535353535353535353535353535353501\
                    80f838f7943535353535353535353535353535353535353535e1a00000000000000000000000000000000000000000000000000000000000000000";
        let tx = decode_transaction(&from_hex(&format!("01{body}")).unwrap()).unwrap();
        assert_eq!((tx.kind, tx.chain_id.as_deref(), tx.access_list_entries), ("eip2930", Some("5"), 1));
        assert_eq!(tx.gas_price.as_deref(), Some("1"));
    }

    #[test]
    fn refuses_truncated_trailing_signed_and_non_canonical_input() {
        let bytes = from_hex(DOCUMENTED).unwrap();
        assert!(decode_transaction(&bytes[..bytes.len() - 1]).is_err(), "truncated");
        assert!(matches!(decode_transaction(&[bytes.clone(), vec![0]].concat()), Err(DecodeError::Trailing(1, _))));
        assert!(decode_transaction(&[]).is_err());
        assert!(decode_transaction(&[0x05, 0xc0]).is_err(), "unknown type");
        // A leading zero in the nonce: 0x82 0x00 0x04 instead of 0x04.
        let padded =
            from_hex("eb8200098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080")
                .unwrap();
        assert!(decode_transaction(&padded).is_err(), "a leading zero byte");
        let signed = from_hex(
            "f0098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080258201018202",
        )
        .unwrap();
        assert!(decode_transaction(&signed).is_err(), "r and s are not zero");
    }

    #[test]
    fn decodes_erc20_calls_exactly() {
        let to = "000000000000000000000000a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";
        let amount = "00000000000000000000000000000000000000000000000000000000000f4240";
        let transfer = from_hex(&format!("a9059cbb{to}{amount}")).unwrap();
        assert_eq!(
            decode_erc20(&transfer).unwrap(),
            Erc20Call::Transfer { to: "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48".into(), amount: "1000000".into() }
        );
        let approve = from_hex(&format!("095ea7b3{to}{amount}")).unwrap();
        assert!(matches!(decode_erc20(&approve).unwrap(), Erc20Call::Approve { .. }));
        let from = from_hex(&format!("23b872dd{to}{to}{amount}")).unwrap();
        assert!(matches!(decode_erc20(&from).unwrap(), Erc20Call::TransferFrom { .. }));
        assert!(decode_erc20(&transfer[..transfer.len() - 1]).is_err(), "truncated");
        assert!(matches!(decode_erc20(&[transfer.clone(), vec![0]].concat()), Err(DecodeError::Trailing(1, _))));
        let dirty = from_hex(&format!("a9059cbb01{}{amount}", &to[2..])).unwrap();
        assert!(decode_erc20(&dirty).is_err(), "high bits in an address word");
        assert!(decode_erc20(&from_hex("deadbeef").unwrap()).is_err(), "another function");
    }
}
