//! The Bitcoin preimage decoder on arbitrary bytes: never a panic, on either network, and what
//! decodes serialises for the policy.
#![no_main]

use cosigner_guard::rawtx::btc::{Network, decode_preimage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for network in [Network::Mainnet, Network::Testnet] {
        if let Ok(preimage) = decode_preimage(data, network) {
            assert!(preimage.signing_input < preimage.inputs.len());
            serde_json::to_value(&preimage).expect("a decoded preimage serialises");
        }
    }
});
