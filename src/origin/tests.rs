use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::keys::{SigningAlgorithm, generate};

fn keypair(alg: Alg) -> (OriginSigner, OriginKey) {
    let pair = match alg {
        Alg::EdDsa => generate_ed25519().unwrap(),
        Alg::Es256 => generate(SigningAlgorithm::Es256).unwrap(),
        Alg::Rs256 => generate(SigningAlgorithm::Rs256).unwrap(),
    };
    let signer = OriginSigner::from_pem(pair.private_pem.as_bytes()).unwrap();
    (signer, OriginKey::from_pem("backend", pair.public_pem.as_bytes()).unwrap())
}

fn request() -> Map<String, Value> {
    json!({
        "txId": "tx-1", "operation": "TRANSFER", "asset": "ETH", "amountStr": "0.010000000000000000",
        "sourceType": "VAULT", "sourceId": "0", "destType": "ONE_TIME_ADDRESS",
        "destAddress": "0x00000000000000000000000000000000000000aa",
        "destinations": [{"type": "ONE_TIME_ADDRESS", "amountStr": "0.01",
                          "displayDstAddress": "0x00000000000000000000000000000000000000aa"}]
    })
    .as_object()
    .unwrap()
    .clone()
}

fn claims(now: DateTime<Utc>) -> Value {
    let dest = ("ONE_TIME_ADDRESS", "", Some("0x00000000000000000000000000000000000000AA"));
    let mut claims = claims_for("ETH", "0.01", ("VAULT", "0"), dest, "j-1", now.timestamp(), Duration::from_secs(600));
    claims["destination"].as_object_mut().unwrap().remove("id");
    claims
}

fn inspect(origin: &Origin, note: &str, now: DateTime<Utc>) -> OriginView {
    let mut request = request();
    request.insert("note".into(), Value::from(note));
    let transfer = Transfer::describe(&request);
    origin.inspect(&request, &transfer, now)
}

fn origin(keys: Vec<OriginKey>) -> Origin {
    Origin { carrier: Carrier::Note, max_age: Duration::from_secs(3600), keys }
}

/// Each key type fixes its algorithm, and a token it signs verifies, its amount compared as a number.
#[test]
fn every_key_type_verifies_its_own_tokens() {
    let now = Utc::now();
    for alg in [Alg::EdDsa, Alg::Es256, Alg::Rs256] {
        let (signer, key) = keypair(alg);
        assert_eq!(key.alg, alg);
        let token = signer.sign(&claims(now), Some("backend")).unwrap();
        let view = inspect(&origin(vec![key]), &format!("payroll run 42 | {token}"), now);
        assert!(view.verified, "{alg:?}: {view:?}");
        assert_eq!(view.mismatches, Vec::<String>::new(), "{alg:?}");
        assert!(view.binding().is_some());
    }
}

/// `none`, HMAC with the public key as secret and another key's algorithm are all refused.
#[test]
fn no_algorithm_but_the_keys_own() {
    let now = Utc::now();
    let (_, key) = keypair(Alg::Rs256);
    let forge = |header: Value, signature: &[u8]| {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.{}", b64(&header), b64(&claims(now)), URL_SAFE_NO_PAD.encode(signature))
    };
    let origin = origin(vec![key]);
    let none = inspect(&origin, &forge(json!({"alg": "none"}), b""), now);
    assert!(!none.verified && none.error.as_deref().unwrap().contains("\"none\""), "{none:?}");
    let hs = inspect(&origin, &forge(json!({"alg": "HS256", "kid": "backend"}), &[1; 32]), now);
    assert!(!hs.verified && hs.error.as_deref().unwrap().contains("HS256"), "{hs:?}");
    let (ed, _) = keypair(Alg::EdDsa);
    let other = inspect(&origin, &ed.sign(&claims(now), Some("backend")).unwrap(), now);
    assert!(!other.verified && other.error.as_deref().unwrap().contains("signs with RS256"), "{other:?}");
}

/// An RSA public key is never taken for an Ed25519 or P-256 one.
#[test]
fn key_types_are_told_apart() {
    assert_eq!(keypair(Alg::Rs256).1.alg, Alg::Rs256);
    assert_eq!(keypair(Alg::Es256).1.alg, Alg::Es256);
    let private = generate_ed25519().unwrap().private_pem;
    assert!(OriginKey::from_pem("k", private.as_bytes()).is_err());
}

#[test]
fn the_carrier_holds_exactly_one_token() {
    assert_eq!(find("no token here").unwrap(), None);
    assert_eq!(find("id eyJhbGc.eyJzdWI.c2ln end").unwrap(), Some("eyJhbGc.eyJzdWI.c2ln"));
    assert_eq!(find("xeyJhbGc.eyJzdWI.c2ln").unwrap(), None);
    assert_eq!(find("eyJa.eyJb.c eyJa.eyJb.d"), Err(TokenError::SeveralTokens));
    assert_eq!(find(&"a".repeat(MAX_CARRIER_BYTES + 1)), Err(TokenError::CarrierTooLong));
}

/// Each bound claim changed is named; the others are not.
#[test]
fn each_changed_claim_is_named() {
    let now = Utc::now();
    let (signer, key) = keypair(Alg::EdDsa);
    let origin = origin(vec![key]);
    let cases: [(&str, &str, Value); 5] = [
        ("amount", "/amount", json!("0.010000000000000001")),
        ("asset", "/asset", json!("BTC")),
        ("source", "/source/id", json!("1")),
        ("destination", "/destination/address", json!("0x00000000000000000000000000000000000000ab")),
        ("operation", "/operation", json!("MINT")),
    ];
    for (name, pointer, value) in cases {
        let mut claims = claims(now);
        match claims.pointer_mut(pointer) {
            Some(slot) => *slot = value,
            None => claims[pointer.trim_start_matches('/')] = value,
        }
        let view = inspect(&origin, &signer.sign(&claims, None).unwrap(), now);
        assert!(view.verified, "{name}: {view:?}");
        assert_eq!(view.mismatches, vec![name.to_string()], "{name}");
    }
}

#[test]
fn time_window_and_required_claims() {
    let now = Utc::now();
    let (signer, key) = keypair(Alg::EdDsa);
    let origin = origin(vec![key]);
    let judged = |edit: &dyn Fn(&mut Value)| {
        let mut claims = claims(now);
        edit(&mut claims);
        inspect(&origin, &signer.sign(&claims, None).unwrap(), now)
    };
    let expired = judged(&|c| c["exp"] = json!(now.timestamp() - 120));
    assert!(expired.error.as_deref().unwrap().contains("expired"), "{expired:?}");
    let old = judged(&|c| c["iat"] = json!(now.timestamp() - 7200));
    assert!(old.error.as_deref().unwrap().contains("max_age"), "{old:?}");
    let no_jti = judged(&|c| drop(c.as_object_mut().unwrap().remove("jti")));
    assert!(!no_jti.verified && no_jti.binding().is_none(), "{no_jti:?}");
}
