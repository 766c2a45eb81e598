//! Which certificates a config needs and where each comes from.
//!
//! A pure function of the [`Config`]: the manager diffs two plans on reload.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{AcmeChallenge, Config, HostPattern, Scheme, TlsMode};

/// Where one certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CertSource {
    /// The ACME CA, trying these challenge types in order.
    Acme {
        /// Challenge types, in order of preference.
        challenges: Vec<AcmeChallenge>,
    },
    /// bellhop's internal CA.
    Internal,
    /// Files given in the config.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
}

/// A certificate that is not looked up by SNI name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fallback {
    /// An internal-CA leaf for these names and IPs.
    Internal(Vec<String>),
    /// Files given in the config.
    Files {
        /// PEM chain.
        cert: PathBuf,
        /// PEM key.
        key: PathBuf,
    },
}

/// Every certificate a config needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// One certificate per SNI name (`app.example.com`, `*.localhost`, `127.0.0.1`), in config order.
    pub names: Vec<(String, CertSource)>,
    /// For clients that send no SNI (they connected by IP address).
    pub no_sni: Option<Fallback>,
    /// For names that match nothing (sites whose address has no host, like `":8443"`).
    pub default: Option<Fallback>,
    /// Ports whose host-less HTTPS site (`"https://:8443"`) uses `tls internal`:
    /// leaves are issued there during the handshake for any name, except the
    /// hosts listed with the port, which other sites on it answer. Ports in
    /// ascending order.
    pub on_demand: Vec<(u16, Vec<HostPattern>)>,
    /// Names bellhop cannot get a certificate for (with the reason), to be logged.
    pub unsupported: Vec<(String, &'static str)>,
}

impl Plan {
    /// Whether any certificate of the plan is signed by the internal CA.
    pub(crate) fn needs_internal_ca(&self) -> bool {
        !self.on_demand.is_empty()
            || self.names.iter().any(|(_, s)| *s == CertSource::Internal)
            || [&self.no_sni, &self.default]
                .iter()
                .any(|f| matches!(f, Some(Fallback::Internal(_))))
    }
}

/// Whether automatic HTTPS uses the internal CA rather than ACME for this host:
/// `localhost`, `*.localhost` and names under it, and IP addresses, which no
/// public CA will certify.
pub(crate) fn uses_internal_ca(host: &HostPattern) -> bool {
    match host {
        HostPattern::Name(name) | HostPattern::Wildcard(name) => {
            name == "localhost" || name.ends_with(".localhost")
        }
        HostPattern::Ip(_) => true,
        HostPattern::Any => true,
    }
}

/// The default challenge order: TLS-ALPN-01 needs only the HTTPS port, which
/// bellhop has to own anyway; HTTP-01 is the fallback.
const DEFAULT_CHALLENGES: [AcmeChallenge; 2] = [AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01];

/// Computes the certificates `config` needs.
pub(crate) fn plan(config: &Config) -> Plan {
    let mut plan = Plan::default();
    let mut ips = Vec::new();
    let mut ip_files = None;
    // Per HTTPS port: whether its catch-all (the first host-less address, as in
    // the router) is `tls internal`, and every host addressed on it.
    let mut ports: BTreeMap<u16, (Option<bool>, Vec<HostPattern>)> = BTreeMap::new();
    for site in &config.sites {
        for address in &site.addresses {
            if address.scheme != Scheme::Https {
                continue;
            }
            let (any_internal, hosts) = ports
                .entry(address.effective_port(&config.options))
                .or_default();
            match address.host {
                HostPattern::Any => {
                    any_internal.get_or_insert(site.tls == TlsMode::Internal);
                }
                _ => hosts.push(address.host.clone()),
            }
            let name = match &address.host {
                HostPattern::Name(name) => name.clone(),
                HostPattern::Wildcard(suffix) => format!("*.{suffix}"),
                HostPattern::Ip(ip) => ip.to_string(),
                HostPattern::Any => {
                    plan.default.get_or_insert_with(|| match &site.tls {
                        TlsMode::Files { cert, key } => Fallback::Files {
                            cert: cert.clone(),
                            key: key.clone(),
                        },
                        _ => Fallback::Internal(Vec::new()),
                    });
                    continue;
                }
            };
            let source = match source_for(&site.tls, &address.host) {
                Ok(source) => source,
                Err(reason) => {
                    plan.unsupported.push((name, reason));
                    continue;
                }
            };
            if let HostPattern::Ip(_) = address.host {
                match &source {
                    CertSource::Internal => ips.push(name.clone()),
                    CertSource::Files { cert, key } if ip_files.is_none() => {
                        ip_files = Some(Fallback::Files {
                            cert: cert.clone(),
                            key: key.clone(),
                        })
                    }
                    _ => {}
                }
            }
            // One certificate per name: the first site that names it decides.
            if plan.names.iter().all(|(n, _)| *n != name) {
                plan.names.push((name, source));
            }
        }
    }
    if let Some(Fallback::Internal(names)) = &mut plan.default {
        // A catch-all internal certificate at least covers local use.
        names.push("localhost".into());
        names.extend(ips.iter().cloned());
    }
    plan.on_demand = ports
        .into_iter()
        .filter(|(_, (any_internal, _))| *any_internal == Some(true))
        .map(|(port, (_, hosts))| (port, hosts))
        .collect();
    plan.no_sni = ip_files.or(if ips.is_empty() {
        None
    } else {
        Some(Fallback::Internal(ips))
    });
    plan
}

/// Where the certificate for `host` comes from under `tls`, or why bellhop
/// cannot get one.
fn source_for(tls: &TlsMode, host: &HostPattern) -> Result<CertSource, &'static str> {
    Ok(match tls {
        TlsMode::Files { cert, key } => CertSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        TlsMode::Internal => CertSource::Internal,
        _ if uses_internal_ca(host) => CertSource::Internal,
        _ if matches!(host, HostPattern::Wildcard(_)) => {
            return Err("wildcard certificates need the DNS-01 challenge, which bellhop does not support; use `tls internal` or certificate files");
        }
        TlsMode::Acme { challenge } => CertSource::Acme {
            challenges: vec![*challenge],
        },
        TlsMode::Auto => CertSource::Acme {
            challenges: DEFAULT_CHALLENGES.to_vec(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Options, Site, SiteAddress};

    fn site(addresses: Vec<SiteAddress>, tls: TlsMode) -> Site {
        Site {
            addresses,
            tls,
            hsts: None,
            routes: Vec::new(),
            bind: None,
            log: None,
        }
    }

    fn https(host: HostPattern) -> SiteAddress {
        SiteAddress {
            scheme: Scheme::Https,
            host,
            port: None,
        }
    }

    #[test]
    fn sorts_names_by_source() {
        let config = Config {
            options: Options::default(),
            sites: vec![
                site(
                    vec![
                        https(HostPattern::Name("app.example.com".into())),
                        https(HostPattern::Name("localhost".into())),
                        https(HostPattern::Ip("127.0.0.1".parse().unwrap())),
                        https(HostPattern::Wildcard("example.com".into())),
                        https(HostPattern::Wildcard("dev.localhost".into())),
                        SiteAddress {
                            scheme: Scheme::Http,
                            host: HostPattern::Name("plain.example.com".into()),
                            port: Some(8080),
                        },
                    ],
                    TlsMode::Auto,
                ),
                site(
                    vec![https(HostPattern::Name("pinned.example.com".into()))],
                    TlsMode::Acme {
                        challenge: AcmeChallenge::Http01,
                    },
                ),
                site(
                    vec![
                        https(HostPattern::Name("files.example.com".into())),
                        // Already claimed by the first site.
                        https(HostPattern::Name("app.example.com".into())),
                    ],
                    TlsMode::Files {
                        cert: "c.pem".into(),
                        key: "k.pem".into(),
                    },
                ),
                site(vec![https(HostPattern::Any)], TlsMode::Auto),
            ],
        };
        let plan = plan(&config);
        let auto = CertSource::Acme {
            challenges: vec![AcmeChallenge::TlsAlpn01, AcmeChallenge::Http01],
        };
        assert_eq!(
            plan.names,
            vec![
                ("app.example.com".to_string(), auto),
                ("localhost".to_string(), CertSource::Internal),
                ("127.0.0.1".to_string(), CertSource::Internal),
                ("*.dev.localhost".to_string(), CertSource::Internal),
                (
                    "pinned.example.com".to_string(),
                    CertSource::Acme {
                        challenges: vec![AcmeChallenge::Http01]
                    }
                ),
                (
                    "files.example.com".to_string(),
                    CertSource::Files {
                        cert: "c.pem".into(),
                        key: "k.pem".into()
                    }
                ),
            ]
        );
        assert_eq!(plan.unsupported.len(), 1);
        assert_eq!(plan.unsupported[0].0, "*.example.com");
        assert_eq!(
            plan.no_sni,
            Some(Fallback::Internal(vec!["127.0.0.1".into()]))
        );
        assert_eq!(
            plan.default,
            Some(Fallback::Internal(vec![
                "localhost".into(),
                "127.0.0.1".into()
            ]))
        );
    }

    #[test]
    fn on_demand_ports_are_those_whose_catch_all_is_internal() {
        let on = |port: u16, host: HostPattern| SiteAddress {
            scheme: Scheme::Https,
            host,
            port: Some(port),
        };
        let config = Config {
            options: Options::default(),
            sites: vec![
                site(vec![on(8444, HostPattern::Any)], TlsMode::Internal),
                site(
                    vec![
                        on(8444, HostPattern::Name("app.test".into())),
                        on(8444, HostPattern::Ip("127.0.0.1".parse().unwrap())),
                        on(8445, HostPattern::Name("other.test".into())),
                    ],
                    TlsMode::Auto,
                ),
                site(
                    vec![
                        on(8446, HostPattern::Any),
                        on(8446, HostPattern::Wildcard("files.test".into())),
                    ],
                    TlsMode::Files {
                        cert: "c.pem".into(),
                        key: "k.pem".into(),
                    },
                ),
                site(
                    vec![https(HostPattern::Name("localhost".into()))],
                    TlsMode::Auto,
                ),
            ],
        };
        let plan = plan(&config);
        assert_eq!(
            plan.on_demand,
            vec![(
                8444,
                vec![
                    HostPattern::Name("app.test".into()),
                    HostPattern::Ip("127.0.0.1".parse().unwrap())
                ]
            )]
        );
        // The static catch-all certificate is still made, for names that are
        // not valid DNS names.
        assert_eq!(
            plan.default,
            Some(Fallback::Internal(vec![
                "localhost".into(),
                "127.0.0.1".into()
            ]))
        );
    }
}
