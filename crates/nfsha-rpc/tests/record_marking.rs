//! Property tests of the record-marking reader: any split into fragments, delivered in any pieces, reassembles.

use nfsha_rpc::wire::RecordDecoder;
use proptest::prelude::*;

/// Record-mark `payload` as fragments of the given sizes (the last one gets the rest and the last-fragment bit).
fn fragment(payload: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    for &s in sizes {
        if s >= rest.len() {
            break;
        }
        let (a, b) = rest.split_at(s);
        out.extend_from_slice(&u32::try_from(a.len()).expect("small").to_be_bytes());
        out.extend_from_slice(a);
        rest = b;
    }
    out.extend_from_slice(&(u32::try_from(rest.len()).expect("small") | 0x8000_0000).to_be_bytes());
    out.extend_from_slice(rest);
    out
}

/// Feed `stream` in pieces of the given sizes; collect every record returned.
fn feed(dec: &mut RecordDecoder, stream: &[u8], pieces: &[usize]) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let n = pieces
            .get(i)
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        i += 1;
        let (a, b) = rest.split_at(n);
        rest = b;
        if let Some(r) = dec.push(a).expect("valid stream") {
            got.push(r);
            // Drain records already buffered behind this one.
            while let Some(r) = dec.push(&[]).expect("valid stream") {
                got.push(r);
            }
        }
    }
    got
}

proptest! {
    #[test]
    fn fragmented_record_reassembles(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(0usize..400, 0..12),
        pieces in proptest::collection::vec(1usize..64, 0..200),
    ) {
        let stream = fragment(&payload, &sizes);
        let mut dec = RecordDecoder::new(1 << 20);
        let got = feed(&mut dec, &stream, &pieces);
        prop_assert_eq!(got, vec![payload]);
        prop_assert!(dec.is_idle());
    }

    #[test]
    fn back_to_back_records_come_out_in_order(
        a in proptest::collection::vec(any::<u8>(), 0..500),
        b in proptest::collection::vec(any::<u8>(), 0..500),
        sizes in proptest::collection::vec(1usize..100, 0..6),
        pieces in proptest::collection::vec(1usize..64, 0..100),
    ) {
        let mut stream = fragment(&a, &sizes);
        stream.extend(fragment(&b, &sizes));
        let mut dec = RecordDecoder::new(1 << 20);
        prop_assert_eq!(feed(&mut dec, &stream, &pieces), vec![a, b]);
    }

    #[test]
    fn records_over_the_limit_are_refused(
        payload in proptest::collection::vec(any::<u8>(), 101..400),
        sizes in proptest::collection::vec(1usize..100, 0..6),
    ) {
        let stream = fragment(&payload, &sizes);
        let mut dec = RecordDecoder::new(100);
        let mut refused = false;
        for chunk in stream.chunks(7) {
            match dec.push(chunk) {
                Err(_) => { refused = true; break; }
                Ok(r) => prop_assert!(r.is_none()),
            }
        }
        prop_assert!(refused);
    }
}

#[test]
fn an_incomplete_record_is_not_returned() {
    let stream = fragment(b"hello world", &[5]);
    let mut dec = RecordDecoder::new(1024);
    assert_eq!(dec.push(&stream[..stream.len() - 1]).expect("ok"), None);
    assert!(!dec.is_idle());
    assert_eq!(
        dec.push(&stream[stream.len() - 1..]).expect("ok"),
        Some(b"hello world".to_vec())
    );
}
