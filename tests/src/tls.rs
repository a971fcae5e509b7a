//! TLS material for a lab, generated per run with rcgen: no private key is ever committed, and
//! every key lives only in the lab's directory for the lab's lifetime.
//!
//! Layout under `<lab dir>/tls/`:
//! * `ca.crt`: the lab CA; its key never leaves memory.
//! * `<holder>/`: one Secret volume per holder (`valkey-i`, `sentinel-j`, [`CLIENT`], and any the
//!   test issues with [`LabTls::issue`]), each with `ca.crt`, `tls.crt` and `tls.key`.
//! * `negative/`: certificates that must be refused ([`NegativeTls`]).
//!
//! A volume is laid out as the kubelet lays out a mounted Secret, so a test can rotate
//! certificates live the way Kubernetes does:
//!
//! ```text
//! valkey-0/..2026_11_24_10_00_00.000000001/{ca.crt,tls.crt,tls.key}   the files of one version
//! valkey-0/..data -> ..2026_11_24_10_00_00.000000001                  the version in use
//! valkey-0/tls.crt -> ..data/tls.crt                                  what configs name; never changes
//! ```
//!
//! [`LabTls::rotate`] (and [`LabTls::install`]) write the new version's directory, point a fresh
//! `..data_tmp` symlink at it and `rename(2)` that over `..data`: one atomic step, so a reader
//! sees the three old files or the three new ones, never a mix. The old directory is then
//! removed. As with the kubelet's swap nothing ever writes to the file `tls.crt` points at, so a
//! reader must re-read the paths (rust-stack.md 2.6). A data pod does so when told: `CONFIG SET
//! tls-cert-file <same path> ...` reloads even though the value is unchanged (the last test of
//! `tests/lab_tls.rs` relies on it); Valkey 9 also has `tls-auto-reload-interval`, off by
//! default and not exercised here. A sentinel cannot be told (see `Lab::tls_mut`).
//!
//! Certificates: ECDSA P-256, valid 2000..2100 (except the expired one), every leaf signed
//! directly by its CA. Pod leaves carry `serverAuth` and `clientAuth`: a Valkey server presents
//! its one certificate on its outgoing links too (replication, sentinel links), and with
//! `tls-auth-clients yes` the far end checks it as a client certificate. A pod's names are its IP
//! and its name (`valkey-0`), so rustls, which checks an IP against IP SANs only, accepts it when
//! dialled by IP (rust-stack.md 2.5).

use std::{
    collections::BTreeMap,
    fs,
    net::IpAddr,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use crate::error::{LabError, Result};

/// The holder name of the client volume: the lab's own client, and what a test hands a
/// coordinator as its client identity.
pub const CLIENT: &str = "client";

/// One mounted Secret volume: `ca.crt`, `tls.crt` and `tls.key` in `dir` (the names KubeBlocks
/// mounts), each a symlink through `..data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The mount point.
    pub dir: PathBuf,
    /// `dir/ca.crt`: the CA to verify peers with.
    pub ca: PathBuf,
    /// `dir/tls.crt`: the holder's certificate.
    pub cert: PathBuf,
    /// `dir/tls.key`: its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    fn at(dir: PathBuf) -> Self {
        TlsFiles {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            dir,
        }
    }

    /// The certificate and key as a pair, e.g. to present with [`client_config`].
    pub fn identity(&self) -> CertFiles {
        CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
        }
    }
}

/// A certificate and its private key, as plain PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Certificates that must be refused, under `<lab dir>/tls/negative/`. Each has exactly one
/// defect: the first two carry every address of the lab and `serverAuth` + `clientAuth`, so
/// nothing but the defect can be the reason a peer refuses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegativeTls {
    /// A second CA, unrelated to the lab's (`other-ca.crt`).
    pub other_ca: PathBuf,
    /// A leaf signed by [`Self::other_ca`]: current, right names, wrong issuer.
    pub foreign: CertFiles,
    /// A leaf signed by the lab CA with the right names, expired since 2001.
    pub expired: CertFiles,
    /// A leaf signed by the lab CA, current, whose names (`wrong-name.invalid`, 192.0.2.1, a
    /// documentation address) match no pod.
    pub wrong_name: CertFiles,
}

/// A CA that can sign: its certificate (PEM) and the issuer holding its key, in memory only.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pem: String,
}

/// A volume and what its certificate is issued for, so a rotation re-issues the same names.
struct Volume {
    files: TlsFiles,
    names: Vec<String>,
    /// The `..<timestamp>` directory `..data` points at.
    current: PathBuf,
}

/// The lab's PKI: the CA, one volume per holder, and the negative material.
pub struct LabTls {
    dir: PathBuf,
    ca: Ca,
    ca_cert: PathBuf,
    volumes: BTreeMap<String, Volume>,
    negative: NegativeTls,
    /// Counts written versions, so two rotations in one second get distinct directories.
    generation: u32,
}

impl std::fmt::Debug for LabTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabTls")
            .field("dir", &self.dir)
            .field("holders", &self.volumes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LabTls {
    /// A new CA in `dir` (created), and the negative material, whose right names are
    /// `addresses` (every address of the lab). Holders get their volumes from [`Self::issue`].
    pub fn generate(dir: &Path, addresses: &[IpAddr]) -> Result<Self> {
        let negative_dir = dir.join("negative");
        create_dir(&negative_dir)?;
        let ca = new_ca("valkey-lab CA")?;
        let ca_cert = dir.join("ca.crt");
        write(&ca_cert, &ca.pem)?;

        let right_names: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        let other = new_ca("valkey-lab unrelated CA")?;
        let other_ca = negative_dir.join("other-ca.crt");
        write(&other_ca, &other.pem)?;
        let foreign = leaf(&other, "foreign", &right_names, Validity::Current)?
            .write(&negative_dir, "foreign")?;
        let expired = leaf(&ca, "expired", &right_names, Validity::Expired)?
            .write(&negative_dir, "expired")?;
        let wrong = ["wrong-name.invalid".to_string(), "192.0.2.1".to_string()];
        let wrong_name = leaf(&ca, "wrong-name", &wrong, Validity::Current)?
            .write(&negative_dir, "wrong-name")?;
        Ok(LabTls {
            dir: dir.to_path_buf(),
            ca,
            ca_cert,
            volumes: BTreeMap::new(),
            negative: NegativeTls {
                other_ca,
                foreign,
                expired,
                wrong_name,
            },
            generation: 0,
        })
    }

    /// The lab CA's certificate (`<lab dir>/tls/ca.crt`; every volume's `ca.crt` is a copy).
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// The negative material.
    pub fn negative(&self) -> &NegativeTls {
        &self.negative
    }

    /// The volume of `holder` (`valkey-0`, `sentinel-1`, [`CLIENT`], or one the test issued).
    pub fn volume(&self, holder: &str) -> Option<&TlsFiles> {
        self.volumes.get(holder).map(|v| &v.files)
    }

    /// Issues a certificate for `holder` (its common name and DNS name) and `ips`, signed by the
    /// lab CA, into a new volume `<lab dir>/tls/<holder>/`. Issuing an existing holder again is a
    /// rotation to the new names.
    pub fn issue(&mut self, holder: &str, ips: &[IpAddr]) -> Result<TlsFiles> {
        let mut names = vec![holder.to_string()];
        names.extend(ips.iter().map(IpAddr::to_string));
        let pem = leaf(&self.ca, holder, &names, Validity::Current)?;
        if let Some(volume) = self.volumes.get_mut(holder) {
            volume.names = names;
            return self.swap(holder, &pem);
        }
        let files = TlsFiles::at(self.dir.join(holder));
        create_dir(&files.dir)?;
        let current = self.write_version(&files.dir, &pem)?;
        symlink_at(
            Path::new(current.file_name().expect("named")),
            &files.dir.join("..data"),
        )?;
        for file in [&files.ca, &files.cert, &files.key] {
            let name = Path::new(file.file_name().expect("named"));
            symlink_at(&Path::new("..data").join(name), file)?;
        }
        self.volumes.insert(
            holder.to_string(),
            Volume {
                files: files.clone(),
                names,
                current,
            },
        );
        Ok(files)
    }

    /// Re-issues `holder`'s certificate (a new key, the same names, the lab CA) and swaps it into
    /// its volume as the kubelet does (see the module doc). The paths do not change.
    pub fn rotate(&mut self, holder: &str) -> Result<TlsFiles> {
        let volume = self.known(holder)?;
        let pem = leaf(&self.ca, holder, &volume.names, Validity::Current)?;
        self.swap(holder, &pem)
    }

    /// Swaps an existing pair (say [`NegativeTls::expired`]) into `holder`'s volume, the same
    /// way as [`Self::rotate`]; the volume's `ca.crt` stays the lab CA.
    pub fn install(&mut self, holder: &str, pair: &CertFiles) -> Result<TlsFiles> {
        self.known(holder)?;
        let pem = LeafPem {
            cert: read(&pair.cert)?,
            key: read(&pair.key)?,
        };
        self.swap(holder, &pem)
    }

    fn known(&self, holder: &str) -> Result<&Volume> {
        self.volumes.get(holder).ok_or_else(|| LabError::Tls {
            context: format!("rotating {holder}"),
            reason: "no such volume (issue it first)".into(),
        })
    }

    /// Writes a new version of `holder`'s files and points `..data` at it atomically.
    fn swap(&mut self, holder: &str, pem: &LeafPem) -> Result<TlsFiles> {
        let dir = self.known(holder)?.files.dir.clone();
        let next = self.write_version(&dir, pem)?;
        let tmp = dir.join("..data_tmp");
        let _ = fs::remove_file(&tmp);
        symlink_at(Path::new(next.file_name().expect("named")), &tmp)?;
        let data = dir.join("..data");
        fs::rename(&tmp, &data)
            .map_err(|e| LabError::io(format!("swapping {}", data.display()), e))?;
        let volume = self.volumes.get_mut(holder).expect("known above");
        let old = std::mem::replace(&mut volume.current, next);
        let _ = fs::remove_dir_all(old);
        Ok(volume.files.clone())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` into a new `..<UTC timestamp>.<generation>`
    /// directory of the volume at `dir` (the kubelet's naming, with a counter for its random
    /// suffix).
    fn write_version(&mut self, dir: &Path, pem: &LeafPem) -> Result<PathBuf> {
        self.generation += 1;
        let version = dir.join(format!(
            "..{}.{:09}",
            utc_stamp(SystemTime::now()),
            self.generation
        ));
        create_dir(&version)?;
        write(&version.join("ca.crt"), &self.ca.pem)?;
        write(&version.join("tls.crt"), &pem.cert)?;
        write(&version.join("tls.key"), &pem.key)?;
        Ok(version)
    }
}

/// A rustls client config trusting the CA bundle at `ca` and presenting `identity` if given.
/// Built on ring explicitly, never on the process-wide default provider (rust-stack.md 2.2), with
/// TLS 1.2 and 1.3 as Valkey allows them.
pub fn client_config(ca: &Path, identity: Option<&CertFiles>) -> Result<Arc<ClientConfig>> {
    let reading = |path: &Path| format!("reading {}", path.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(tls_error(reading(ca)))? {
        let cert = cert.map_err(tls_error(reading(ca)))?;
        roots
            .add(cert)
            .map_err(tls_error(format!("trusting {}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_error("choosing protocol versions"))?
        .with_root_certificates(roots);
    let Some(pair) = identity else {
        return Ok(Arc::new(builder.with_no_client_auth()));
    };
    let chain = CertificateDer::pem_file_iter(&pair.cert)
        .map_err(tls_error(reading(&pair.cert)))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(tls_error(reading(&pair.cert)))?;
    let key = PrivateKeyDer::from_pem_file(&pair.key).map_err(tls_error(reading(&pair.key)))?;
    let config = builder
        .with_client_auth_cert(chain, key)
        .map_err(tls_error(format!("presenting {}", pair.cert.display())))?;
    Ok(Arc::new(config))
}

/// A certificate and key in PEM, not yet on disk.
struct LeafPem {
    cert: String,
    key: String,
}

impl LeafPem {
    /// Writes `<name>.crt` and `<name>.key` into `dir`.
    fn write(&self, dir: &Path, name: &str) -> Result<CertFiles> {
        let pair = CertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        write(&pair.cert, &self.cert)?;
        write(&pair.key, &self.key)?;
        Ok(pair)
    }
}

#[derive(Clone, Copy)]
enum Validity {
    /// 2000-01-01 .. 2100-01-01.
    Current,
    /// 2000-01-01 .. 2001-01-01.
    Expired,
}

fn new_ca(common_name: &str) -> Result<Ca> {
    let mut params = CertificateParams::default();
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2100, 1, 1);
    let key = KeyPair::generate().map_err(tls_error("generating a CA key"))?;
    let issuer =
        CertifiedIssuer::self_signed(params, key).map_err(tls_error("self-signing a CA"))?;
    let pem = issuer.pem();
    Ok(Ca { issuer, pem })
}

/// A leaf for `names` (IP literals become IP SANs, the rest DNS SANs) signed by `ca`.
fn leaf(ca: &Ca, common_name: &str, names: &[String], validity: Validity) -> Result<LeafPem> {
    let context = format!("issuing a certificate for {common_name}");
    let mut params = CertificateParams::new(names.to_vec()).map_err(tls_error(&context))?;
    params.distinguished_name.remove(DnType::CommonName);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = match validity {
        Validity::Current => date_time_ymd(2100, 1, 1),
        Validity::Expired => date_time_ymd(2001, 1, 1),
    };
    let key = KeyPair::generate().map_err(tls_error(&context))?;
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(tls_error(&context))?;
    Ok(LeafPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Turns a TLS library's error into [`LabError::Tls`] with what the lab was doing.
fn tls_error<E: std::fmt::Display>(context: impl Into<String>) -> impl FnOnce(E) -> LabError {
    let context = context.into();
    move |e| LabError::Tls {
        context,
        reason: e.to_string(),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))
}

fn symlink_at(target: &Path, link: &Path) -> Result<()> {
    symlink(target, link).map_err(|e| LabError::io(format!("linking {}", link.display()), e))
}

/// `2026_11_24_10_00_00` (UTC), as the kubelet names a volume's versions.
fn utc_stamp(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}_{month:02}_{day:02}_{:02}_{:02}_{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day): Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn version_directories_are_named_by_utc_time_like_the_kubelets() {
        let at = UNIX_EPOCH + Duration::from_secs(1_795_478_400 + 3_723); // 2026-11-24 01:02:03
        assert_eq!(utc_stamp(at), "2026_11_24_01_02_03");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn a_rotation_swaps_the_data_link_and_keeps_the_paths() {
        let dir = std::env::temp_dir().join(format!("valkey-lab-tls-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let ip: IpAddr = "127.0.9.10".parse().unwrap();
        let mut tls = LabTls::generate(&dir, &[ip]).unwrap();
        let files = tls.issue("valkey-0", &[ip]).unwrap();
        let before = fs::read_to_string(&files.cert).unwrap();
        let link_before = fs::read_link(files.dir.join("..data")).unwrap();
        assert_eq!(
            fs::read_link(&files.cert).unwrap(),
            Path::new("..data/tls.crt")
        );

        let after = tls.rotate("valkey-0").unwrap();
        assert_eq!(after, files, "the paths never change");
        assert_ne!(fs::read_to_string(&files.cert).unwrap(), before);
        assert_ne!(
            fs::read_link(files.dir.join("..data")).unwrap(),
            link_before
        );
        assert!(
            !files.dir.join(&link_before).exists(),
            "the old version is removed"
        );
        assert_eq!(
            fs::read_to_string(&files.ca).unwrap(),
            fs::read_to_string(tls.ca_cert()).unwrap()
        );
        client_config(&files.ca, Some(&files.identity())).expect("the rotated pair loads");
        let _ = fs::remove_dir_all(&dir);
    }
}
