//! What berthd's streaming server parses from any client before a
//! request is authorized further than its URL token: SPDY/3.1 frames
//! (`berth_streaming::spdy::frame::Decoder`, fed in pieces as a socket
//! delivers them) and the zlib header blocks of SYN_STREAM, SYN_REPLY and
//! HEADERS frames (`HeaderDecoder`, one context for the whole input, as a
//! session keeps one per direction).
//!
//! Asserted:
//! - no panic, whatever the bytes and however they are split;
//! - every decoded control frame encodes again and decodes to itself;
//! - a decoded header block re-encodes (with a fresh compressor) into a
//!   block that decodes to the same headers;
//! - decoding stops at the first error (a session ends there).
#![no_main]

use berth_streaming::spdy::frame::{Decoder, DecoderConfig, Frame};
use berth_streaming::spdy::headers::{HeaderDecoder, HeaderEncoder};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let piece = usize::from(split % 64) + 1;
    let mut decoder = Decoder::new(DecoderConfig {
        max_control_frame_len: 64 * 1024,
        max_data_frame_len: 1 << 20,
    });
    let mut headers = HeaderDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            let frame = match decoder.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(_) => return,
            };
            let block = match &frame {
                Frame::SynStream(f) => Some(f.header_block.clone()),
                Frame::SynReply(f) => Some(f.header_block.clone()),
                Frame::Headers(f) => Some(f.header_block.clone()),
                _ => None,
            };
            if !matches!(frame, Frame::Data(_)) {
                let bytes = frame.to_bytes().expect("a decoded frame encodes");
                let mut again = BytesMut::from(&bytes[..]);
                let back = Decoder::new(DecoderConfig {
                    max_control_frame_len: 64 * 1024,
                    max_data_frame_len: 1 << 20,
                })
                .decode(&mut again)
                .expect("an encoded frame decodes")
                .expect("whole");
                assert_eq!(back, frame);
            }
            if let Some(block) = block {
                let Ok(h) = headers.decode(&block) else {
                    return;
                };
                let mut enc = HeaderEncoder::new().expect("a compressor");
                let re = enc.encode(&h).expect("decoded headers encode");
                let h2 = HeaderDecoder::new(1 << 20)
                    .decode(&re)
                    .expect("re-encoded headers decode");
                assert_eq!(h2, h);
            }
        }
    }
});
