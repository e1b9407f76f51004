//! Arbitrary bytes through the typed-frame decoder, and every frame body it
//! yields through every inspector. Nothing may panic; no frame may exceed the
//! maximum; a refused length must not have grown the buffer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::{decode_frame, inspect, reader::Reader};

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_frame(&mut buf, MAX) {
            Ok(Some(frame)) => {
                assert!(frame.len() >= 5 && frame.len() <= MAX);
                assert_eq!(buf.len() + frame.len(), before);
                let body = frame.body();
                let _ = inspect::parse(body);
                let _ = inspect::bind(body);
                let _ = inspect::target(body);
                let _ = inspect::parameter_status(body);
                let _ = inspect::backend_key_data(body);
                let _ = inspect::ready_for_query(body);
                let _ = inspect::auth_request(body);
                let _ = inspect::sasl_initial_response(body);
                let _ = inspect::password(body);
                let _ = inspect::error_fields(body);
                let mut r = Reader::new(body);
                while r.cstr().is_some() {}
            }
            Ok(None) => {
                assert_eq!(buf.len(), before);
                // Room is reserved only for a frame within the limit.
                assert!(buf.capacity() <= MAX.max(data.len()) * 2);
                break;
            }
            Err(_) => break,
        }
    }
});
