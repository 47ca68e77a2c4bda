//! Bitcoin: the per-input signature-hash preimages Fireblocks sends in `rawTx[]` — the whole
//! transaction in its legacy serialisation, the signed input's script code in place of its
//! scriptSig, the other inputs' scripts empty, and the sighash type appended.

use serde::Serialize;

use super::{DecodeError, Reader, sha256d, to_hex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    Mainnet,
    Testnet,
}

impl Network {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "mainnet" => Some(Self::Mainnet),
            "testnet" => Some(Self::Testnet),
            _ => None,
        }
    }
}

/// One preimage, decoded. Values are decimal strings of satoshis; txids in the usual (reversed)
/// display order; scripts lowercase hex.
#[derive(Debug, Serialize, PartialEq)]
pub struct Preimage {
    pub version: u32,
    pub inputs: Vec<Input>,
    /// The input this preimage signs: the only one with a script code.
    pub signing_input: usize,
    pub outputs: Vec<Output>,
    pub locktime: u32,
    pub sighash_type: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Input {
    pub txid: String,
    pub vout: u32,
    pub script_code: String,
    pub sequence: u32,
    #[serde(flatten)]
    pub script: Script,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Output {
    pub value: String,
    #[serde(rename = "script_pubkey")]
    pub script_hex: String,
    #[serde(flatten)]
    pub script: Script,
}

/// What a script pays to: its standard type, its address on the network, and the key or script
/// hash it commits to (`pubkey_hash` for P2PKH and P2WPKH, so change to either form of a signing
/// key is recognised).
#[derive(Debug, Serialize, PartialEq)]
pub struct Script {
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pubkey_hash: Option<String>,
}

/// Inputs take at least 41 bytes and outputs 9: counts beyond what the bytes can hold are refused
/// before anything is allocated.
const MIN_INPUT: usize = 41;
const MIN_OUTPUT: usize = 9;

pub fn decode_preimage(bytes: &[u8], network: Network) -> Result<Preimage, DecodeError> {
    let mut reader = Reader::new(bytes);
    let version = u32::from_le_bytes(reader.array("version")?);
    let input_count = count(&mut reader, MIN_INPUT, "input")?;
    if input_count == 0 {
        return Err(DecodeError::Invalid(
            "no inputs (a SegWit serialisation? Fireblocks sends the legacy form of each preimage)".into(),
        ));
    }
    let mut inputs = Vec::with_capacity(input_count);
    for _ in 0..input_count {
        let mut txid: [u8; 32] = reader.array("input's previous txid")?;
        txid.reverse();
        let vout = u32::from_le_bytes(reader.array("input's output index")?);
        let script_len = count(&mut reader, 1, "script code byte")?;
        let script_code = reader.take(script_len, "input's script code")?;
        let sequence = u32::from_le_bytes(reader.array("input's sequence")?);
        inputs.push(Input {
            txid: to_hex(&txid),
            vout,
            script_code: to_hex(script_code),
            sequence,
            script: classify(script_code, network),
        });
    }
    let output_count = count(&mut reader, MIN_OUTPUT, "output")?;
    let mut outputs = Vec::with_capacity(output_count);
    for _ in 0..output_count {
        let value = u64::from_le_bytes(reader.array("output's value")?);
        let script_len = count(&mut reader, 1, "script byte")?;
        let script = reader.take(script_len, "output's script")?;
        outputs.push(Output {
            value: value.to_string(),
            script_hex: to_hex(script),
            script: classify(script, network),
        });
    }
    let locktime = u32::from_le_bytes(reader.array("locktime")?);
    let sighash_type = u32::from_le_bytes(reader.array("sighash type")?);
    reader.finish("sighash type")?;

    let mut signing = inputs.iter().enumerate().filter(|(_, input)| !input.script_code.is_empty());
    let signing_input = match (signing.next(), signing.next()) {
        (Some((index, _)), None) => index,
        (None, _) => return Err(DecodeError::Invalid("no input has a script code: nothing is signed".into())),
        (Some(_), Some(_)) => {
            return Err(DecodeError::Invalid("more than one input has a script code: not a legacy preimage".into()));
        }
    };
    Ok(Preimage { version, inputs, signing_input, outputs, locktime, sighash_type })
}

/// A CompactSize count, canonical (as Bitcoin Core requires), of items of at least `min_size`
/// bytes each: more than the rest of the data could hold is truncation, found before allocating.
fn count(reader: &mut Reader, min_size: usize, what: &'static str) -> Result<usize, DecodeError> {
    let first = reader.take(1, what)?[0];
    let (value, minimum): (u64, u64) = match first {
        0xfd => (u16::from_le_bytes(reader.array(what)?).into(), 0xfd),
        0xfe => (u32::from_le_bytes(reader.array(what)?).into(), 0x1_0000),
        0xff => (u64::from_le_bytes(reader.array(what)?), 0x1_0000_0000),
        small => (small.into(), 0),
    };
    if value < minimum {
        return Err(DecodeError::Invalid(format!("the {what} count is not in its shortest encoding")));
    }
    match usize::try_from(value) {
        Ok(n) if n.saturating_mul(min_size) <= reader.remaining() => Ok(n),
        _ => Err(DecodeError::Truncated(what)),
    }
}

/// The standard output scripts, and their addresses.
pub fn classify(script: &[u8], network: Network) -> Script {
    let (kind, address, pubkey_hash) = match script {
        [0x76, 0xa9, 0x14, hash @ .., 0x88, 0xac] if hash.len() == 20 => {
            ("p2pkh", base58check(network.pick(0x00, 0x6f), hash), Some(to_hex(hash)))
        }
        [0xa9, 0x14, hash @ .., 0x87] if hash.len() == 20 => {
            ("p2sh", base58check(network.pick(0x05, 0xc4), hash), None)
        }
        [0x00, 0x14, hash @ ..] if hash.len() == 20 => ("p2wpkh", segwit(network, 0, hash), Some(to_hex(hash))),
        [0x00, 0x20, hash @ ..] if hash.len() == 32 => ("p2wsh", segwit(network, 0, hash), None),
        [0x51, 0x20, key @ ..] if key.len() == 32 => ("p2tr", segwit(network, 1, key), None),
        [] => ("empty", None, None),
        [0x6a, ..] => ("op_return", None, None),
        _ => ("nonstandard", None, None),
    };
    Script { kind, address, pubkey_hash }
}

impl Network {
    fn pick<T>(self, mainnet: T, testnet: T) -> T {
        match self {
            Self::Mainnet => mainnet,
            Self::Testnet => testnet,
        }
    }
}

fn base58check(version: u8, hash: &[u8]) -> Option<String> {
    let mut bytes = Vec::with_capacity(25);
    bytes.push(version);
    bytes.extend_from_slice(hash);
    let checksum = sha256d(&bytes);
    bytes.extend_from_slice(&checksum[..4]);
    Some(bs58::encode(bytes).into_string())
}

/// Whether `address` is a Bitcoin address of `network`: Base58Check P2PKH or P2SH with its
/// checksum, or a SegWit address (bech32 / bech32m) with the network's prefix.
pub fn valid_address(address: &str, network: Network) -> bool {
    if let Ok((hrp, _, _)) = bech32::segwit::decode(address) {
        return hrp == network.pick(bech32::hrp::BC, bech32::hrp::TB);
    }
    let Ok(bytes) = bs58::decode(address).into_vec() else { return false };
    let [version, body @ .., c0, c1, c2, c3] = bytes.as_slice() else { return false };
    body.len() == 20
        && [network.pick(0x00, 0x6f), network.pick(0x05, 0xc4)].contains(version)
        && sha256d(&bytes[..21])[..4] == [*c0, *c1, *c2, *c3]
}

fn segwit(network: Network, version: u8, program: &[u8]) -> Option<String> {
    let hrp = network.pick(bech32::hrp::BC, bech32::hrp::TB);
    let version = bech32::Fe32::try_from(version).ok()?;
    bech32::segwit::encode(hrp, version, program).ok()
}

#[cfg(test)]
mod address_tests {
    use super::*;

    #[test]
    fn addresses_are_valid_only_on_their_network_with_their_checksum() {
        let mainnet = ["1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"];
        for address in mainnet {
            assert!(valid_address(address, Network::Mainnet), "{address}");
            assert!(!valid_address(address, Network::Testnet), "{address} is not a testnet address");
        }
        for bad in
            ["1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdD", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr", "hello", "", "0xabc"]
        {
            assert!(!valid_address(bad, Network::Mainnet), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rawtx::from_hex;

    /// The two preimages of the legacy two-input example in Fireblocks' `btc_tx_validation` guide:
    /// 87,600 sat to 1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC, change to the signing key's P2WPKH.
    pub const GUIDE_INPUT_0: &str = "0100000002c845e228b169e8713414f51f5a60a1c670aaf57138811279ddc3b530fe4c4ac8000000001976a91495f6fbf9976938f6bffc646adf8b54a8f70620eb88acffffffffa3d781905b0122466f72efa1f751cf8e2cb9f6fda8efedf989443bd358ec5f480000000000ffffffff0230560100000000001976a9148ca80d9b17cdba4b0f9b117c92852ca04a69783988ac2b4901000000000016001495f6fbf9976938f6bffc646adf8b54a8f70620eb0000000001000000";

    #[test]
    fn decodes_the_guide_preimage_and_its_hash() {
        let bytes = from_hex(GUIDE_INPUT_0).unwrap();
        assert_eq!(to_hex(&sha256d(&bytes)), "74bac76ffa277c14ba33ff1be302ed07e0a1e5dceebdc5f161df8d9d688b613c");
        let preimage = decode_preimage(&bytes, Network::Mainnet).unwrap();
        assert_eq!((preimage.version, preimage.locktime, preimage.sighash_type), (1, 0, 1));
        assert_eq!(preimage.signing_input, 0);
        assert_eq!(preimage.inputs.len(), 2);
        assert_eq!(preimage.inputs[0].txid, "c84a4cfe30b5c3dd7912813871f5aa70c6a1605a1ff5143471e869b128e245c8");
        assert_eq!(preimage.inputs[0].script.pubkey_hash.as_deref(), Some("95f6fbf9976938f6bffc646adf8b54a8f70620eb"));
        assert_eq!(preimage.inputs[1].script_code, "");
        let [pay, change] = &preimage.outputs[..] else { panic!("two outputs") };
        assert_eq!((pay.value.as_str(), pay.script.kind), ("87600", "p2pkh"));
        assert_eq!(pay.script.address.as_deref(), Some("1DpivPqJkLxbRwm4GpxXsNPKS29ou1NYdC"));
        assert_eq!((change.value.as_str(), change.script.kind), ("84267", "p2wpkh"));
        assert_eq!(change.script.pubkey_hash, preimage.inputs[0].script.pubkey_hash);
    }

    #[test]
    fn addresses_of_every_standard_type_on_both_networks() {
        let h20 = [
            0x75, 0x1e, 0x76, 0xe8, 0x19, 0x91, 0x96, 0xd4, 0x54, 0x94, 0x1c, 0x45, 0xd1, 0xb3, 0xa3, 0x23, 0xf1, 0x43,
            0x3b, 0xd6,
        ];
        let p2wpkh = [&[0x00, 0x14][..], &h20].concat();
        // BIP-173's example key hash.
        assert_eq!(
            classify(&p2wpkh, Network::Mainnet).address.as_deref(),
            Some("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4")
        );
        assert_eq!(
            classify(&p2wpkh, Network::Testnet).address.as_deref(),
            Some("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx")
        );
        let p2pkh = [&[0x76, 0xa9, 0x14][..], &h20, &[0x88, 0xac]].concat();
        assert_eq!(classify(&p2pkh, Network::Mainnet).address.as_deref(), Some("1BgGZ9tcN4rm9KBzDn7KprQz87SZ26SAMH"));
        assert_eq!(classify(&p2pkh, Network::Testnet).address.as_deref(), Some("mrCDrCybB6J1vRfbwM5hemdJz73FwDBC8r"));
        let p2sh = [&[0xa9, 0x14][..], &h20, &[0x87]].concat();
        assert_eq!(classify(&p2sh, Network::Mainnet).address.as_deref(), Some("3CNHUhP3uyB9EUtRLsmvFUmvGdjGdkTxJw"));
        let p2wsh = from_hex("00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262").unwrap();
        assert_eq!(
            classify(&p2wsh, Network::Mainnet).address.as_deref(),
            Some("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3")
        );
        let p2tr = from_hex("5120a60869f0dbcf1dc659c9cecbaf8050135ea9e8cdc487053f1dc6880949dc684c").unwrap();
        let tr = classify(&p2tr, Network::Mainnet);
        assert_eq!(tr.kind, "p2tr");
        assert_eq!(tr.address.as_deref(), Some("bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"));
        assert_eq!(classify(&[0x6a, 0x01, 0x00], Network::Mainnet).kind, "op_return");
        assert_eq!(classify(&[0x51], Network::Mainnet).kind, "nonstandard");
    }

    #[test]
    fn refuses_truncated_trailing_and_oversized_counts() {
        let bytes = from_hex(GUIDE_INPUT_0).unwrap();
        for cut in [1, 4, 5, 40, 100, bytes.len() - 1] {
            assert!(decode_preimage(&bytes[..cut], Network::Mainnet).is_err(), "cut at {cut}");
        }
        let trailing = [bytes.clone(), vec![0]].concat();
        assert!(matches!(decode_preimage(&trailing, Network::Mainnet), Err(DecodeError::Trailing(1, _))));
        // Version, then a count of 2^64 - 1 inputs: refused before allocating.
        let huge = from_hex("01000000ffffffffffffffffff").unwrap();
        assert_eq!(decode_preimage(&huge, Network::Mainnet), Err(DecodeError::Truncated("input")));
        let padded = from_hex("01000000fd0200").unwrap();
        assert!(matches!(decode_preimage(&padded, Network::Mainnet), Err(DecodeError::Invalid(_))));
        let segwit = from_hex("010000000001").unwrap();
        assert!(decode_preimage(&segwit, Network::Mainnet).is_err());
    }
}
