//! Leaf certificates shown to clients: one per server name, signed by the
//! interception CA (ECDSA P-256, SHA-256, valid a week), kept in memory and in
//! `ssl_cert_dir`; or the one `ssl_cert` for every name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::ca::{write_new, Authority};

/// How long a generated leaf is valid, and how long before its end it is
/// replaced.
const LEAF_VALIDITY: time::Duration = time::Duration::days(7);
const RENEW_BEFORE: time::Duration = time::Duration::days(1);
/// Leaves kept in memory; past this the cache starts again (names are few in
/// practice, the bound is against a client that invents them).
const MAX_CACHED: usize = 4096;

/// Where the certificate for a name comes from.
pub enum Leaves {
    /// `ssl_cert` and `ssl_key`: the same certificate for every name.
    Fixed(Arc<CertifiedKey>),
    /// `ssl_ca_cert` and `ssl_ca_key`: one made per name.
    Signed {
        ca: Box<Authority>,
        dir: Option<PathBuf>,
        cache: Mutex<HashMap<String, (Arc<CertifiedKey>, time::OffsetDateTime)>>,
    },
}

impl Leaves {
    /// The fixed certificate chain of `ssl_cert` with the key of `ssl_key`.
    pub fn fixed(cert: &Path, key: &Path) -> Result<Self, String> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("{}: {e}", cert.display()))?;
        if chain.is_empty() {
            return Err(format!("{}: no certificate in it", cert.display()));
        }
        let key_der =
            PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
        let certified = certified(chain, key_der).map_err(|e| format!("{}: {e}", key.display()))?;
        Ok(Leaves::Fixed(Arc::new(certified)))
    }

    pub fn signed(ca: Authority, dir: Option<PathBuf>) -> Self {
        Leaves::Signed {
            ca: Box::new(ca),
            dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn cert_dir(&self) -> Option<&Path> {
        match self {
            Leaves::Signed { dir, .. } => dir.as_deref(),
            Leaves::Fixed(_) => None,
        }
    }

    /// The certificate and key to present for `name` (a DNS name or an IP).
    pub fn for_name(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let (ca, dir, cache) = match self {
            Leaves::Fixed(leaf) => return Ok(leaf.clone()),
            Leaves::Signed { ca, dir, cache } => (ca, dir, cache),
        };
        let now = time::OffsetDateTime::now_utc();
        let mut cache = cache.lock().expect("leaf cache lock poisoned");
        if let Some((leaf, until)) = cache.get(name) {
            if *until - RENEW_BEFORE > now {
                return Ok(leaf.clone());
            }
        }
        let file = dir
            .as_ref()
            .filter(|_| safe_file_name(name))
            .map(|d| d.join(format!("{name}.pem")));
        let (leaf, until) = match file.as_deref().and_then(|f| load(f, ca, now)) {
            Some(found) => found,
            None => {
                let (leaf, until, pem) = make(name, ca, now)?;
                if let Some(file) = &file {
                    store(file, &pem);
                }
                (leaf, until)
            }
        };
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(name.to_string(), (leaf.clone(), until));
        Ok(leaf)
    }
}

fn certified(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, String> {
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("unusable private key: {e}"))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// A new leaf for `name`; also its PEM (certificate, then key) for the disk.
fn make(
    name: &str,
    ca: &Authority,
    now: time::OffsetDateTime,
) -> Result<(Arc<CertifiedKey>, time::OffsetDateTime, String), String> {
    let fail = |e: rcgen::Error| format!("cannot make a certificate for {name}: {e}");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into().map_err(fail)?),
    }];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(rand_serial());
    params.not_before = now - time::Duration::hours(1);
    let until = now + LEAF_VALIDITY;
    params.not_after = until;
    let cert = params.signed_by(&key, &ca.cert, &ca.key).map_err(fail)?;
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let leaf = certified(vec![cert.der().clone(), ca.der.clone()], key_der)?;
    Ok((Arc::new(leaf), until, pem))
}

/// A leaf from the disk cache, if it is there, signed by this CA and not
/// about to expire.
fn load(
    file: &Path,
    ca: &Authority,
    now: time::OffsetDateTime,
) -> Option<(Arc<CertifiedKey>, time::OffsetDateTime)> {
    let pem = std::fs::read(file).ok()?;
    let cert = CertificateDer::from_pem_slice(&pem).ok()?;
    let key = PrivateKeyDer::from_pem_slice(&pem).ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).ok()?;
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.der).ok()?;
    parsed.verify_signature(Some(ca_cert.public_key())).ok()?;
    let until =
        time::OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp()).ok()?;
    if until - RENEW_BEFORE <= now {
        return None;
    }
    let leaf = certified(vec![cert.clone(), ca.der.clone()], key).ok()?;
    Some((Arc::new(leaf), until))
}

fn store(file: &Path, pem: &str) {
    let _ = std::fs::remove_file(file);
    if let Err(e) = write_new(file, pem.as_bytes(), 0o600) {
        log::warn!("ssl_cert_dir: cannot keep a certificate: {e}");
    }
}

/// Names that are safe as a file name: what DNS names and IP addresses use.
fn safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
}

fn rand_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .expect("system random source");
    bytes[0] &= 0x7f;
    rcgen::SerialNumber::from_slice(&bytes)
}
