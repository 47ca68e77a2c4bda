//! What the benchmarks share.

use std::path::Path;

#[allow(dead_code)] // not every benchmark copies the starter
/// Copies the starter policy set — its policies, libraries and data, not its tests — into `to`.
pub fn copy_starter(to: &Path) {
    cosigner_guard::dev::write_starter_policies(to).expect("starter policies");
}

/// The input document as the live path builds it, a transaction's canonical view included.
#[allow(dead_code)] // not every benchmark builds input documents
pub fn input_document(
    request: cosigner_guard::request::CosignerRequest,
    context: &cosigner_guard::policy::RequestContext,
    assets: &cosigner_guard::transfer::Assets,
) -> serde_json::Value {
    use cosigner_guard::request::RequestKind;
    let transfer = (request.kind == RequestKind::Transaction)
        .then(|| cosigner_guard::transfer::Transfer::derive(&request.payload, assets));
    cosigner_guard::policy::input_document(request.kind, request.payload, context, transfer.as_ref(), None, None)
}
