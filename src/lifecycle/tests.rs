use super::*;

/// Each version's fields become one status event; v1's id is its body's hash.
#[test]
fn v1_and_v2_events_read_the_same() {
    let v2 = br#"{"id": "e-1", "eventType": "transaction.status.updated", "createdAt": 1,
        "data": {"id": "t", "status": "FAILED", "subStatus": "", "lastUpdated": 1700000000123, "txHash": ""}}"#;
    let Event::Status(event) = parse(v2).unwrap() else { panic!("a status event") };
    assert_eq!((event.id.as_str(), event.tx_id.as_str(), event.last_updated_ms), ("e-1", "t", 1_700_000_000_123));
    assert!(event.releases() && event.sub_status.is_none() && event.tx_hash.is_none());
    let v1 = br#"{"type": "TRANSACTION_STATUS_UPDATED", "tenantId": "x", "timestamp": 1,
        "data": {"id": "t", "status": "COMPLETED", "lastUpdated": 5, "txHash": "0xab"}}"#;
    let Event::Status(event) = parse(v1).unwrap() else { panic!("a status event") };
    assert!(event.id.starts_with("v1:") && !event.releases() && event.kind == "transaction.status.updated");
    assert_eq!(
        parse(br#"{"type": "VAULT_ACCOUNT_ADDED", "data": {}}"#).unwrap(),
        Event::Other { kind: "VAULT_ACCOUNT_ADDED".into() }
    );
}

#[test]
fn events_without_what_orders_or_names_them_are_refused() {
    for body in [
        &br#"{"id": "e", "eventType": "transaction.status.updated", "data": {"id": "t", "status": "FAILED"}}"#[..],
        br#"{"id": "e", "eventType": "transaction.status.updated", "data": {"status": "FAILED", "lastUpdated": 1}}"#,
        br#"{"eventType": "transaction.status.updated", "data": {"id": "t", "status": "FAILED", "lastUpdated": 1}}"#,
        br#"[1, 2]"#,
        b"\xff\xfe",
    ] {
        assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
    }
}

/// A release signed by an approver names them; a stale, edited or stranger's one names nobody.
#[test]
fn a_signed_release_names_its_approver() {
    let pair = crate::holds::generate_approver_key().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice.pem");
    std::fs::write(&path, &pair.private_pem).unwrap();
    let key = crate::holds::ApproverSigningKey::from_pem_file(&path).unwrap();
    let approvers = vec![Arc::new(crate::holds::ApproverKey::from_pem("alice", pair.public_pem.as_bytes()).unwrap())];
    let request = ReleaseRequest::signed("t-1", "failed", &key);
    assert_eq!(request.approver("t-1", &approvers).as_deref(), Some("alice"));
    assert_eq!(request.approver("t-2", &approvers), None, "another transaction");
    let edited = ReleaseRequest { reason: "other".into(), ..request.clone() };
    assert_eq!(edited.approver("t-1", &approvers), None);
    let stale = ReleaseRequest { at: Some("2020-01-01T00:00:00.000Z".into()), ..request };
    assert_eq!(stale.approver("t-1", &approvers), None);
}
