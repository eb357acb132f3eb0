//! Decodes MARS frames and says what they hold — or exactly why they are refused.
//!
//! ```text
//! cargo run -p mars-proto --example inspect -- ../shared/vectors/frames.json
//! cargo run -p mars-proto --example inspect -- 4d480182000102030405060708090a0b0c0d0e0f00000009a16673746f726564f5
//! ```
//! A `.json` argument is read as a vector file (every `"hex"` entry is
//! decoded); anything else is one frame in hex. Descriptors inside frames are
//! validated at a time just after their own timestamp.

use std::time::Duration;

use mars_proto::wire::{FindValueResult, Frame, Message};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("usage: inspect <frame-hex | vectors.json>...");
        std::process::exit(2);
    }
    let mut refused = 0;
    for arg in &args {
        let frames: Vec<(String, String)> = if arg.ends_with(".json") {
            match read_vector_file(arg) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("{arg}: {e}");
                    std::process::exit(1);
                }
            }
        } else {
            vec![("frame".to_owned(), arg.clone())]
        };
        for (name, hex) in frames {
            if !inspect(&name, &hex) {
                refused += 1;
            }
        }
    }
    if refused > 0 {
        eprintln!("{refused} frame(s) refused");
        std::process::exit(1);
    }
}

fn read_vector_file(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let list = v.as_array().ok_or("expected a JSON array of {name, hex}")?;
    Ok(list
        .iter()
        .filter_map(|e| {
            let hex = e.get("hex")?.as_str()?.to_owned();
            let name = e
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("?")
                .to_owned();
            Some((name, hex))
        })
        .collect())
}

fn inspect(name: &str, hex: &str) -> bool {
    let bytes = match decode_hex(hex.trim()) {
        Some(b) => b,
        None => {
            println!("{name}: not hex");
            return false;
        }
    };
    match Frame::decode(&bytes) {
        Ok(frame) => {
            println!(
                "{name}: {} bytes, {:?}",
                bytes.len(),
                frame.message.message_type()
            );
            println!("  {:#?}", frame.message);
            let descriptors = match &frame.message {
                Message::Store(s) => vec![(*s.descriptor).clone()],
                Message::FindValueResult(FindValueResult::Descriptors(d)) => d.clone(),
                _ => vec![],
            };
            for d in descriptors {
                let now = d.timestamp.saturating_add(Duration::from_secs(1));
                match d.validate(now) {
                    Ok(v) => println!("  descriptor {} valid, expires {}", v.id, v.expires_at()),
                    Err(e) => println!("  descriptor invalid: {e}"),
                }
            }
            true
        }
        Err(e) => {
            println!("{name}: refused: {e}");
            false
        }
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}
