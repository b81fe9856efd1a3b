use super::*;

fn identity(network: &str, token: Option<&str>) -> BridgeIdentity {
    let mut id = BridgeIdentity::new(network, format!("{network}-1"));
    id.auth_token = token.map(crate::Secret::from);
    id
}

fn policy(identity: &BridgeIdentity) -> AcceptorPolicy<'_> {
    AcceptorPolicy {
        identity,
        accept_legacy_auth: true,
        max_message_bytes: 4096,
        delivery: None,
        batch: false,
    }
}

/// Runs a whole 1.1 handshake in memory; the dialer's view of the result.
fn run(
    dialer_id: &BridgeIdentity,
    acceptor_id: &BridgeIdentity,
    expected: Option<&str>,
) -> Result<PeerInfo, String> {
    run_offering(dialer_id, acceptor_id, expected, [false, false]).map(|(peer, _)| peer)
}

/// As `run`, each side offering BATCH frames or not (`batch`: dialer,
/// acceptor); also what the acceptor settled on.
fn run_offering(
    dialer_id: &BridgeIdentity,
    acceptor_id: &BridgeIdentity,
    expected: Option<&str>,
    batch: [bool; 2],
) -> Result<(PeerInfo, bool), String> {
    let dialer = Dialer::new(dialer_id, expected, DialMode::Offer, 1024)
        .unwrap()
        .with_batch(batch[0]);
    let request = parse_request(&dialer.first_frame()).unwrap();
    let acceptor_policy = AcceptorPolicy {
        batch: batch[1],
        ..policy(acceptor_id)
    };
    let (challenge, state) = match on_request(&request, &acceptor_policy) {
        Ok(AcceptorNext::Challenge { frame, state }) => (frame, state),
        Ok(AcceptorNext::Accept10) => panic!("a 1.1 offer was answered as 1.0"),
        Err(refusal) => return Err(format!("acceptor: {}", refusal.text())),
    };
    let (proof, peer) = match dialer.on_reply(&challenge).map_err(|e| format!("dialer: {e}"))? {
        DialerNext::Prove { frame, peer } => (frame, peer),
        DialerNext::Done(_) => panic!("a challenge was read as a 1.0 reply"),
    };
    let result = match state.check(&proof, acceptor_id) {
        Ok(()) => reply_text(acceptor_id, Ok(())),
        Err(refusal) => reply_text(acceptor_id, Err(&refusal)),
    };
    dialer.on_result(&result).map_err(|e| format!("dialer: {e}"))?;
    Ok((peer, state.batch))
}

#[test]
fn batch_frames_are_used_only_when_both_sides_offer_them() {
    let (beta, alpha) = (identity("beta", Some("t")), identity("alpha", Some("t")));
    for offers in [[false, false], [true, false], [false, true], [true, true]] {
        let (peer, acceptor_batch) = run_offering(&beta, &alpha, Some("alpha"), offers).unwrap();
        let Wire::V11 { batch, .. } = peer.wire else {
            panic!("not 1.1: {:?}", peer.wire)
        };
        let both = offers == [true, true];
        assert_eq!((batch, acceptor_batch), (both, both), "offers {offers:?}");
    }
    // The offer is a capability in the first frame, which a 1.0 acceptor ignores.
    let dialer = Dialer::new(&beta, None, DialMode::Offer, 1024)
        .unwrap()
        .with_batch(true);
    let first: serde_json::Value = serde_json::from_str(&dialer.first_frame()).unwrap();
    assert!(
        first["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == batch::CAPABILITY)
    );
    // Never in a plain 1.0 first frame.
    let legacy = Dialer::new(&beta, None, DialMode::LegacyPlaintext, 1024)
        .unwrap()
        .with_batch(true);
    assert!(!legacy.first_frame().contains(batch::CAPABILITY));
}

#[test]
fn peers_with_the_same_token_prove_it_without_sending_it() {
    let beta = identity("beta", Some("shared-secret"));
    let alpha = identity("alpha", Some("shared-secret"));
    let dialer = Dialer::new(&beta, None, DialMode::Offer, 1024).unwrap();
    let first = dialer.first_frame();
    assert!(!first.contains("shared-secret"), "{first}");
    let value: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(value["auth_token"].is_null());
    assert_eq!(value["protocol_version"], "1.0");
    assert!(
        value["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == CAPABILITY_V11)
    );
    let peer = run(&beta, &alpha, Some("alpha")).unwrap();
    assert_eq!(peer.network_id, "alpha");
    assert_eq!(
        peer.wire,
        Wire::V11 {
            peer_max_message: 4096,
            delivery: None,
            batch: false,
        }
    );
}

#[test]
fn a_wrong_token_on_either_side_fails() {
    let err = run(&identity("beta", Some("a")), &identity("alpha", Some("b")), None).unwrap_err();
    assert!(err.starts_with("dialer:"), "the dialer checks first: {err}");
    // A dialer without a token never learns anything, and is refused.
    let err = run(&identity("beta", None), &identity("alpha", Some("b")), None).unwrap_err();
    assert!(err.contains("auth_token mismatch"), "{err}");
}

#[test]
fn a_stranger_without_the_token_cannot_pass_as_the_acceptor() {
    let err = run(&identity("beta", Some("s")), &identity("alpha", None), None).unwrap_err();
    assert!(err.contains("did not prove"), "{err}");
}

#[test]
fn the_dialer_refuses_another_network_than_the_one_it_meant() {
    let err = run(&identity("beta", None), &identity("gamma", None), Some("alpha")).unwrap_err();
    assert!(err.contains("expected network alpha"), "{err}");
    assert!(err.contains("gamma"), "{err}");
}

#[test]
fn an_acceptors_proof_cannot_be_reflected_as_the_dialers() {
    let alpha = identity("alpha", Some("s"));
    let beta = identity("beta", Some("s"));
    let dialer = Dialer::new(&beta, None, DialMode::Offer, 1024).unwrap();
    let request = parse_request(&dialer.first_frame()).unwrap();
    let Ok(AcceptorNext::Challenge { frame, state }) = on_request(&request, &policy(&alpha)) else {
        panic!("no challenge")
    };
    let challenge: serde_json::Value = serde_json::from_str(&frame).unwrap();
    let reflected = serde_json::json!({ "proof": challenge["proof"] }).to_string();
    assert_eq!(state.check(&reflected, &alpha), Err(Refusal::ProofMismatch));
}

#[test]
fn a_1_0_dialer_with_the_token_in_clear_is_accepted_unless_legacy_auth_is_off() {
    let alpha = identity("alpha", Some("s"));
    let beta = identity("beta", Some("s"));
    let dialer = Dialer::new(&beta, None, DialMode::LegacyPlaintext, 1024).unwrap();
    let request = parse_request(&dialer.first_frame()).unwrap();
    assert!(matches!(
        on_request(&request, &policy(&alpha)),
        Ok(AcceptorNext::Accept10)
    ));
    let strict = AcceptorPolicy {
        accept_legacy_auth: false,
        ..policy(&alpha)
    };
    assert_eq!(
        on_request(&request, &strict).unwrap_err(),
        Refusal::LegacyAuthRefused
    );
    let wrong_id = identity("beta", Some("x"));
    let wrong = Dialer::new(&wrong_id, None, DialMode::LegacyPlaintext, 1024).unwrap();
    let request = parse_request(&wrong.first_frame()).unwrap();
    assert_eq!(
        on_request(&request, &policy(&alpha)).unwrap_err(),
        Refusal::TokenMismatch
    );
}

#[test]
fn a_dialer_with_a_token_refuses_a_1_0_acceptor_unless_told_otherwise() {
    let beta = identity("beta", Some("s"));
    let reply = reply_text(&identity("alpha", None), Ok(()));
    let offer = Dialer::new(&beta, None, DialMode::Offer, 1024).unwrap();
    assert!(matches!(offer.on_reply(&reply), Err(HandshakeError::Unproven(_))));
    let legacy = Dialer::new(&beta, None, DialMode::LegacyPlaintext, 1024).unwrap();
    assert!(matches!(
        legacy.on_reply(&reply),
        Ok(DialerNext::Done(PeerInfo { wire: Wire::V10, .. }))
    ));
    // Without a token there is nothing to prove: plain 1.0.
    let open_id = identity("beta", None);
    let open = Dialer::new(&open_id, None, DialMode::Offer, 1024).unwrap();
    assert!(matches!(open.on_reply(&reply), Ok(DialerNext::Done(_))));
}

#[test]
fn refusal_reads_as_the_protocol_says_on_the_dialer() {
    let alpha = identity("alpha", Some("s"));
    let beta = identity("beta", None);
    let dialer = Dialer::new(&beta, None, DialMode::Offer, 1024).unwrap();
    let err = dialer
        .on_reply(&reply_text(&alpha, Err(&Refusal::TokenMismatch)))
        .unwrap_err();
    assert_eq!(err.to_string(), "handshake refused: auth_token mismatch");
}

#[test]
fn odd_ids_are_refused_with_the_rule_they_break() {
    let alpha = identity("alpha", None);
    for bad in [
        "beta\nINFO forged line",
        "be@ta",
        "be:ta",
        "be ta",
        "be\u{202e}ta",
        "",
        &"x".repeat(100_000),
    ] {
        let mut request = parse_request(
            &Dialer::new(&identity("beta", None), None, DialMode::Offer, 1024)
                .unwrap()
                .first_frame(),
        )
        .unwrap();
        request.network_id = bad.to_string();
        match on_request(&request, &policy(&alpha)) {
            Err(Refusal::BadId { field, .. }) => assert_eq!(field, "network_id"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
}

#[test]
fn the_request_never_shows_its_token_in_debug() {
    let beta = identity("beta", Some("hunter2"));
    let dialer = Dialer::new(&beta, None, DialMode::LegacyPlaintext, 1024).unwrap();
    let request = parse_request(&dialer.first_frame()).unwrap();
    assert!(!format!("{request:?}").contains("hunter2"));
}

#[test]
fn other_versions_and_own_ids_are_refused() {
    let alpha = identity("alpha", None);
    let mut request = parse_request(
        &Dialer::new(&identity("beta", None), None, DialMode::Offer, 1024)
            .unwrap()
            .first_frame(),
    )
    .unwrap();
    request.protocol_version = "2.0".into();
    assert!(matches!(
        on_request(&request, &policy(&alpha)),
        Err(Refusal::UnsupportedVersion(_))
    ));
    let request = parse_request(
        &Dialer::new(&identity("alpha", None), None, DialMode::Offer, 1024)
            .unwrap()
            .first_frame(),
    )
    .unwrap();
    assert_eq!(
        on_request(&request, &policy(&alpha)).unwrap_err(),
        Refusal::SameNetworkId
    );
}

#[test]
fn a_declining_dialer_is_refused_even_by_an_acceptor_without_a_token() {
    let open = identity("gamma", None);
    let dialer_id = identity("delta", Some("s"));
    let dialer = Dialer::new(&dialer_id, None, DialMode::Offer, 1024).unwrap();
    let request = parse_request(&dialer.first_frame()).unwrap();
    let Ok(AcceptorNext::Challenge { frame, state }) = on_request(&request, &policy(&open)) else {
        panic!("no challenge")
    };
    assert!(matches!(
        dialer.on_reply(&frame),
        Err(HandshakeError::Unproven(_))
    ));
    assert_eq!(state.check(&decline_frame(), &open), Err(Refusal::Declined));
    // A tokenless dialer's null proof is still fine for a tokenless acceptor.
    assert_eq!(state.check(r#"{"proof": null}"#, &open), Ok(()));
}
