//! The ingress's HTTP/1 framing on any bytes: no panic, spans inside the input, and a chunked
//! body read the same whatever the reads it arrives in.
#![no_main]

use alveole_h1::chunked::{self, Decoder};
use alveole_h1::head::{self, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let mut fields = Vec::new();
    if let Ok(Some(request)) = head::parse_request(input, &mut fields) {
        assert!(request.len <= input.len());
        for field in &fields {
            let _ = (field.name.of(input), field.value.of(input));
        }
        // Both framings at once never pass.
        let names = |name: &[u8]| {
            fields
                .iter()
                .filter(|f| f.name.of(input).eq_ignore_ascii_case(name))
                .count()
        };
        assert!(names(b"content-length") <= 1);
        if request.framing == Framing::Chunked {
            assert_eq!(names(b"content-length"), 0);
        }
        body_reads_agree(&input[request.len..], usize::from(split) + 1);
    }
    for to_head in [false, true] {
        if let Ok(Some(response)) = head::parse_response(input, to_head, &mut fields) {
            assert!(response.len <= input.len());
        }
    }
    body_reads_agree(input, usize::from(split) + 1);
    // Whatever the ingress encodes, it decodes back.
    let mut encoded = Vec::new();
    for piece in input.chunks(usize::from(split) + 1) {
        chunked::size_line(piece.len(), &mut encoded);
        encoded.extend_from_slice(piece);
        encoded.extend_from_slice(b"\r\n");
    }
    encoded.extend_from_slice(chunked::LAST_CHUNK);
    assert_eq!(decode(&encoded, encoded.len()), Ok((input.to_vec(), encoded.len(), true)));
});

/// The body read whole and read `step` bytes at a time: the same data, end and error.
fn body_reads_agree(body: &[u8], step: usize) {
    let whole = decode(body, body.len().max(1));
    let pieces = decode(body, step);
    assert_eq!(whole, pieces);
}

/// The data of `body` fed `step` bytes at a time, the bytes used, and whether it ended.
fn decode(body: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ()> {
    let mut decoder = Decoder::default();
    let mut data = Vec::new();
    let mut used = 0;
    for piece in body.chunks(step) {
        let mut at = 0;
        while at < piece.len() && !decoder.is_done() {
            let step = decoder.decode(&piece[at..]).map_err(|_| ())?;
            if let Some(range) = step.data {
                assert!(range.end <= piece.len() - at);
                data.extend_from_slice(&piece[at..][range]);
            }
            assert!(step.consumed > 0 && step.consumed <= piece.len() - at);
            at += step.consumed;
        }
        used += at;
        if decoder.is_done() {
            break;
        }
    }
    Ok((data, used, decoder.is_done()))
}
