//! Request decoding in json mode, the canonical transfer view (its raw transactions decoded with the
//! starter's asset table) and input-document building: arbitrary bytes must never panic.
#![no_main]

use cosigner_guard::envelope::{Mode, open};
use cosigner_guard::keys::CosignerKeyring;
use cosigner_guard::policy::{RequestContext, input_document};
use cosigner_guard::request::{CosignerRequest, RequestKind};
use cosigner_guard::transfer::{Assets, Transfer};
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;

fuzz_target!(|data: &[u8]| {
    let Ok(opened) = open(Mode::Json, data, &CosignerKeyring::default()) else { return };
    let Ok(request) = CosignerRequest::from_payload(RequestKind::Transaction, opened.payload) else { return };
    let context = RequestContext { received_at: chrono::Utc::now(), mode: Mode::Json, cosigner_key: None, origin: None };
    let table: serde_json::Value =
        serde_json::from_str(include_str!("../../../policies/rawtx/data.json")).expect("table");
    let transfer = Transfer::derive(&request.payload, &Assets::from_data(&table["assets"]));
    let input = input_document(request.kind, request.payload, &context, Some(&transfer), None, None);
    let converted = regorus::Value::deserialize(&input).expect("a parsed document always converts");
    let _ = converted.to_json_str();
});
