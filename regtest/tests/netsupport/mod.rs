//! Helpers shared by the network tests: a test wallet key, raw HTTP, raw Electrum lines.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::str::FromStr;
use std::time::Duration;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, consensus, transaction, Address, Amount, CompressedPublicKey, Network, OutPoint,
    ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness,
};
use btcmpc_regtest::harness::TestEnv;
use serde_json::{json, Value};

/// A P2WPKH key the tests spend from.
pub struct Key {
    pub secret: SecretKey,
    pub pubkey: CompressedPublicKey,
    pub address: Address,
}

impl Key {
    pub fn new(seed: u8) -> Key {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(&[seed.max(1); 32]).expect("a valid scalar");
        let pubkey = CompressedPublicKey(secret.public_key(&secp));
        let address = Address::p2wpkh(&pubkey, Network::Regtest);
        Key {
            secret,
            pubkey,
            address,
        }
    }

    pub fn script_pubkey(&self) -> ScriptBuf {
        self.address.script_pubkey()
    }

    /// Spend `prevouts` (all ours) to `outputs`, signed.
    pub fn spend(&self, prevouts: &[(OutPoint, Amount)], outputs: Vec<TxOut>) -> Transaction {
        let secp = Secp256k1::new();
        let mut tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: prevouts
                .iter()
                .map(|(op, _)| TxIn {
                    previous_output: *op,
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                    witness: Witness::new(),
                })
                .collect(),
            output: outputs,
        };
        let spk = self.script_pubkey();
        let mut witnesses = Vec::new();
        {
            let mut cache = SighashCache::new(&tx);
            for (i, (_, value)) in prevouts.iter().enumerate() {
                let h = cache
                    .p2wpkh_signature_hash(i, &spk, *value, EcdsaSighashType::All)
                    .expect("p2wpkh sighash");
                let sig = secp.sign_ecdsa(&Message::from_digest(h.to_byte_array()), &self.secret);
                witnesses.push(Witness::p2wpkh(
                    &bitcoin::ecdsa::Signature::sighash_all(sig),
                    &self.pubkey.0,
                ));
            }
        }
        for (input, w) in tx.input.iter_mut().zip(witnesses) {
            input.witness = w;
        }
        tx
    }
}

/// Fund `key` with `amount` (confirmed) and return the outpoint.
pub fn funded(env: &TestEnv, key: &Key, amount: Amount) -> OutPoint {
    let txid = env.fund(&key.address, amount).expect("fund");
    let tx = get_tx(env, &txid);
    let vout = tx
        .output
        .iter()
        .position(|o| o.script_pubkey == key.script_pubkey() && o.value == amount)
        .expect("the funding output");
    OutPoint {
        txid,
        vout: vout as u32,
    }
}

pub fn get_tx(env: &TestEnv, txid: &Txid) -> Transaction {
    let hex_tx: String = env
        .rpc()
        .call_as("getrawtransaction", &[json!(txid.to_string())])
        .expect("getrawtransaction");
    consensus::encode::deserialize(&hex::decode(hex_tx).expect("hex")).expect("a transaction")
}

pub fn tx_hex(tx: &Transaction) -> String {
    consensus::encode::serialize_hex(tx)
}

pub fn txid_of(v: &Value) -> Txid {
    Txid::from_str(v.as_str().expect("a txid string")).expect("a txid")
}

/// One raw HTTP request; returns (status, body). `auth` is the `user:password` to send.
pub fn http(addr: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth_header = auth
        .map(|a| format!("Authorization: Basic {}\r\n", b64(a.as_bytes())))
        .unwrap_or_default();
    let req = format!(
        "POST / HTTP/1.1\r\nHost: {addr}\r\n{auth_header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("an http status");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

pub fn cookie(env: &TestEnv) -> String {
    std::fs::read_to_string(env.cookie_path().expect("a cookie"))
        .expect("cookie file")
        .trim()
        .to_string()
}

pub fn rpc_addr(env: &TestEnv) -> String {
    env.rpc_url().trim_start_matches("http://").to_string()
}

/// A raw Electrum connection.
pub struct Electrum {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    /// Notifications read while waiting for a reply, handed out by `try_read` first.
    pending: std::collections::VecDeque<Value>,
}

impl Electrum {
    pub fn connect(env: &TestEnv) -> Electrum {
        let s = TcpStream::connect(env.electrum_url()).expect("connect electrum");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Electrum {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
            pending: std::collections::VecDeque::new(),
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    /// Next line as JSON (panics on timeout).
    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read a line");
        assert!(n > 0, "connection closed");
        serde_json::from_str(&line).expect("json line")
    }

    /// Next notification kept by `call`, else the next line; `None` on close or timeout.
    pub fn try_read(&mut self, timeout: Duration) -> Option<Value> {
        if let Some(v) = self.pending.pop_front() {
            return Some(v);
        }
        self.reader.get_ref().set_read_timeout(Some(timeout)).ok()?;
        let mut line = String::new();
        let r = self.reader.read_line(&mut line);
        self.reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        match r {
            Ok(n) if n > 0 => serde_json::from_str(&line).ok(),
            _ => None,
        }
    }

    pub fn call(&mut self, id: u64, method: &str, params: Value) -> Value {
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{req}\n").as_bytes());
        loop {
            let v = self.read();
            if v.get("id") == Some(&json!(id)) {
                return v;
            }
            if v.get("method").is_some() && v.get("id").is_none() {
                // A notification: kept for `try_read`, in order.
                self.pending.push_back(v);
            }
        }
    }
}
