//! The interception CA: `imspector ca create DIR` makes one, `ssl_ca_cert` and
//! `ssl_ca_key` load it to sign a leaf certificate per server name.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// File names `ca create` writes.
pub const CA_CERT_FILE: &str = "imspector-ca.pem";
pub const CA_KEY_FILE: &str = "imspector-ca.key";

/// How long a new CA is valid: clients install it once.
const CA_VALIDITY_DAYS: i64 = 10 * 365;

/// A CA that signs leaves: its certificate (as parsed, to name it as issuer),
/// its DER for the chain, and its key.
pub struct Authority {
    pub cert: rcgen::Certificate,
    pub der: CertificateDer<'static>,
    pub key: KeyPair,
}

impl Authority {
    /// Load `ssl_ca_cert` and `ssl_ca_key` (PEM).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, String> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| format!("{}: cannot read: {e}", p.display()))
        };
        let cert_pem = read(cert_path)?;
        let key = KeyPair::from_pem(&read(key_path)?)
            .map_err(|e| format!("{}: not a usable private key: {e}", key_path.display()))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| format!("{}: no PEM certificate: {e}", cert_path.display()))?;
        let params = CertificateParams::from_ca_cert_pem(&cert_pem)
            .map_err(|e| format!("{}: not a CA certificate: {e}", cert_path.display()))?;
        // Re-signing the parsed fields gives the issuer name and key identifier
        // the leaves need; the CA's own certificate in the chain stays `der`.
        let cert = params.self_signed(&key).map_err(|e| {
            format!(
                "{}: key does not fit the certificate: {e}",
                key_path.display()
            )
        })?;
        if key.public_key_der() != public_key_of(&der)? {
            return Err(format!(
                "{} is not the key of {}",
                key_path.display(),
                cert_path.display()
            ));
        }
        Ok(Authority { cert, der, key })
    }
}

/// The SubjectPublicKeyInfo of a DER certificate.
fn public_key_of(der: &[u8]) -> Result<Vec<u8>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("unreadable certificate: {e}"))?;
    Ok(cert.public_key().raw.to_vec())
}

/// Make a new CA in `dir`: the key (mode 0600) and the certificate. Returns
/// their paths. Existing files are never overwritten.
pub fn create(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "IMSpector");
    name.push(
        DnType::CommonName,
        format!("IMSpector interception CA ({})", host_name()),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CA_VALIDITY_DAYS);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_path = dir.join(CA_KEY_FILE);
    let cert_path = dir.join(CA_CERT_FILE);
    write_new(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&cert_path, cert.pem().as_bytes(), 0o644)?;
    Ok((cert_path, key_path))
}

/// Write a file that must not exist yet, with `mode` from the start.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(contents)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_string())
}

/// What `ca create` prints: where the files are and how clients trust the CA.
pub fn install_instructions(cert: &Path, key: &Path) -> String {
    let cert = cert.display();
    format!(
        "CA key:         {key} (mode 0600: keep it on the gateway only)\n\
         CA certificate: {cert}\n\
         \n\
         In imspector.conf:\n\
         \x20 ssl=on\n\
         \x20 ssl_ca_cert={cert}\n\
         \x20 ssl_ca_key={key}\n\
         \n\
         Install the certificate (not the key) on every monitored client:\n\
         \x20 Debian/Ubuntu: cp {cert} /usr/local/share/ca-certificates/imspector-ca.crt && update-ca-certificates\n\
         \x20 Windows:       certutil -addstore -f Root imspector-ca.pem  (as administrator; or by group policy)\n\
         \x20 Firefox:       Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import\n\
         \x20                (or policies.json \"Certificates\": {{\"Install\": [...]}}); Chrome and Edge use the system store\n\
         \x20 Pidgin:        Tools > Certificates > Add, or copy it into ~/.purple/certificates/x509/tls_peers/ for\n\
         \x20                a single server; Pidgin also trusts the system store\n\
         See docs/tls.md.\n",
        key = key.display()
    )
}
