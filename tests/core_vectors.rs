//! Known answers for the core, read from the same JSON files pytest reads:
//! RFC 4231 / RFC 2202 HMAC vectors and our golden QCD tokens.

use std::net::IpAddr;

use _core::token::{hmac, Algorithm, TokenMaker};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn hmac_rfc_vectors() {
    let doc = load("hmac.json");
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 21);
    for v in vectors {
        let alg = Algorithm::parse(v["algorithm"].as_str().unwrap()).unwrap();
        let want = unhex(v["mac"].as_str().unwrap());
        let got = hmac(
            alg,
            &unhex(v["key"].as_str().unwrap()),
            &unhex(v["data"].as_str().unwrap()),
        );
        assert_eq!(&got[..want.len()], &want[..], "{}", v["source"]);
    }
}

#[test]
fn golden_tokens() {
    let doc = load("tokens.json");
    let secrets: Vec<Vec<u8>> = doc["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| unhex(s.as_str().unwrap()))
        .collect();
    let refs: Vec<&[u8]> = secrets.iter().map(Vec::as_slice).collect();
    let mut checked = 0;
    for v in doc["vectors"].as_array().unwrap() {
        let alg = Algorithm::parse(v["algorithm"].as_str().unwrap()).unwrap();
        let tl = v["token_len"].as_u64().map(|x| x as usize);
        let maker = TokenMaker::new(&refs, alg, tl).unwrap();
        let a = u64::from_str_radix(v["spi_i"].as_str().unwrap(), 16).unwrap();
        let b = u64::from_str_radix(v["spi_r"].as_str().unwrap(), 16).unwrap();
        let addr: Vec<u8> = match v["address"].as_str() {
            None => Vec::new(),
            Some(s) => match s.parse::<IpAddr>().unwrap() {
                IpAddr::V4(x) => x.octets().to_vec(),
                IpAddr::V6(x) => x.octets().to_vec(),
            },
        };
        let g = v["generation"].as_u64().unwrap() as usize;
        let want = unhex(v["token"].as_str().unwrap());
        assert_eq!(maker.derive(g, a, b, &addr).unwrap(), want);
        assert!(maker.verify(a, b, &want, &addr).unwrap());
        if addr.is_empty() {
            // the batch kernel (whichever `IKEQCD_KERNEL` / calibration chose): 17 rows cover
            // full interleaved groups of every width and a remainder
            let n = 17;
            let mut out = vec![0u8; n * want.len()];
            maker
                .derive_batch(g, &vec![a; n], &vec![b; n], &mut out, 1)
                .unwrap();
            assert!(out
                .chunks_exact(want.len())
                .all(|row| row == want.as_slice()));
        }
        checked += 1;
    }
    assert_eq!(checked, 336);
}
