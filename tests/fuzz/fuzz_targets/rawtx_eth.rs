//! The Ethereum decoders on arbitrary bytes: never a panic; what decodes also decodes its calldata
//! without one, and serialises for the policy.
#![no_main]

use cosigner_guard::rawtx::{eth, from_hex, to_hex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = eth::decode_erc20(data);
    if let Ok(tx) = eth::decode_transaction(data) {
        let calldata = from_hex(&tx.data).expect("the decoder writes hex");
        let _ = eth::decode_erc20(&calldata);
        serde_json::to_value(&tx).expect("a decoded transaction serialises");
    }
    // Through hex, as the builtins receive it.
    assert_eq!(from_hex(&to_hex(data)).expect("round trip"), data);
});
