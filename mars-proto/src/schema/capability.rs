//! The `core/capability` payload: "I can do X, reach me at Y" (PROTOCOL.md
//! §5.2).
//!
//! ```text
//! capability-advertisement = {
//!   type: tstr, version: uint, params: { * tstr => any },
//!   ? constraints: { ? geo, ? temporal, ? capacity, ? pricing },
//!   endpoint: { protocol: tstr, address: tstr, ? auth: tstr },
//!   ? metadata: { * tstr => any }
//! }
//! ```
//!
//! Two encodings are live (WIRE.md, "core/capability payloads come in two
//! encodings"), and [`Capability::decode`] reads both:
//! - a **CBOR map**, as the spec and the reference Rust client write it; the
//!   client writes only `endpoint` (a URL as text), `type` and, when given,
//!   `params` as a *text string* (usually holding JSON);
//! - a **JSON object** (first byte `{`), as the reference HTTP gateway writes
//!   it for every Python/TypeScript SDK, MCP bridge and GPU provider
//!   publication: `type`, `endpoint` (text) and `params` as any JSON value.
//!
//! [`Capability::to_cbor`] always writes CBOR, keys in bytewise order as the
//! reference client does. Beware: the reference gateway skips every CBOR
//! payload silently, so its users do not see CBOR publications — neither ours
//! nor the reference Rust client's.
//!
//! Decoding is lenient where the network is (missing `version` and `params`,
//! a bare-text `endpoint`, unknown keys ignored, an explicit `null` read as
//! absent) and strict everywhere else, with a [`CapabilityError`] naming the
//! field and the rule. CBOR maps with a duplicate key are refused; in JSON
//! the last duplicate wins, as in every JSON library the SDKs use.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use super::payload::{self, Any, Fields, PayloadError, w};
use super::{CORE_CAPABILITY, hierarchical_keys, routing_key};
use crate::descriptor::{Descriptor, DescriptorBuilder, ValidationError, limits};
use crate::hash::Hash;
use crate::identity::Keypair;
use crate::time::Timestamp;

/// Most levels a type path may have: one routing key per level, and a
/// descriptor carries at most 8 routing keys.
pub const MAX_TYPE_PATH_LEVELS: usize = limits::MAX_ROUTING_KEYS;

/// Longest type path, in bytes: the reference publishes a capability under
/// its type path as the descriptor topic, which is at most 255 bytes.
pub const MAX_TYPE_PATH_LEN: usize = limits::MAX_TOPIC_LEN;

/// The version [`Capability::new`] writes: the spec requires a `version`,
/// and 1 is the first version of any capability type.
pub const DEFAULT_CAPABILITY_VERSION: u64 = 1;

// ---------------------------------------------------------------------------
// Type paths

/// A capability type path such as `compute/inference/text-generation`: what
/// a capability is, and — hashed level by level — where in the DHT it lives.
///
/// Valid means: not empty, no empty segment (so no leading, trailing or
/// doubled `/`), at most [`MAX_TYPE_PATH_LEVELS`] levels and
/// [`MAX_TYPE_PATH_LEN`] bytes, so that its hierarchical routing keys and
/// the topic made from it always fit a descriptor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypePath(String);

/// Why a string is not a valid [`TypePath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypePathError {
    /// The empty string names nothing and hashes to no useful key.
    #[error("type path is empty")]
    Empty,
    /// Longer than a descriptor topic may be.
    #[error("type path is {len} bytes, longer than the {max} allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_TYPE_PATH_LEN`].
        max: usize,
    },
    /// An empty segment: a leading, trailing or doubled `/`, which would
    /// give a prefix routing key nobody looks up.
    #[error("type path segment {index} (0-based) is empty: no leading, trailing or doubled '/'")]
    EmptySegment {
        /// Which segment.
        index: usize,
    },
    /// More levels than a descriptor has routing keys.
    #[error("type path has {levels} levels; at most {max} fit a descriptor's routing keys")]
    TooManyLevels {
        /// Levels found.
        levels: usize,
        /// [`MAX_TYPE_PATH_LEVELS`].
        max: usize,
    },
}

impl TypePath {
    /// Checks and wraps a type path.
    pub fn new(path: impl Into<String>) -> Result<Self, TypePathError> {
        let path = path.into();
        Self::check(&path)?;
        Ok(TypePath(path))
    }

    fn check(path: &str) -> Result<(), TypePathError> {
        if path.is_empty() {
            return Err(TypePathError::Empty);
        }
        if path.len() > MAX_TYPE_PATH_LEN {
            return Err(TypePathError::TooLong {
                len: path.len(),
                max: MAX_TYPE_PATH_LEN,
            });
        }
        let mut levels = 0;
        for (index, segment) in path.split('/').enumerate() {
            if segment.is_empty() {
                return Err(TypePathError::EmptySegment { index });
            }
            levels += 1;
        }
        if levels > MAX_TYPE_PATH_LEVELS {
            return Err(TypePathError::TooManyLevels {
                levels,
                max: MAX_TYPE_PATH_LEVELS,
            });
        }
        Ok(())
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its segments, broadest first (`compute`, `inference`, …).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// How many levels (segments) it has: also how many routing keys it gets.
    pub fn levels(&self) -> usize {
        self.segments().count()
    }

    /// Every prefix, broadest first, ending with the path itself:
    /// `a`, `a/b`, `a/b/c` — the paths a discoverer may query.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.0
            .match_indices('/')
            .map(|(i, _)| &self.0[..i])
            .chain(std::iter::once(self.0.as_str()))
    }

    /// The routing key of the full path: where an exact query looks.
    pub fn routing_key(&self) -> Hash {
        routing_key(&self.0)
    }

    /// One routing key per prefix, broadest first (PROTOCOL.md §4.5): what a
    /// publisher puts in its descriptor so that `compute` finds it too.
    pub fn routing_keys(&self) -> Vec<Hash> {
        hierarchical_keys(&self.0)
    }
}

impl fmt::Display for TypePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TypePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for TypePath {
    type Err = TypePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TypePath::new(s)
    }
}

impl TryFrom<&str> for TypePath {
    type Error = TypePathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        TypePath::new(s)
    }
}

impl TryFrom<String> for TypePath {
    type Error = TypePathError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        TypePath::new(s)
    }
}

// ---------------------------------------------------------------------------
// Endpoint

/// How to reach the provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A bare address, usually a URL: what the reference client and gateway
    /// write (`"https://agent.example/v1/gen"`), and all the gateway reads.
    Text(String),
    /// The spec's structured form (PROTOCOL.md §5.2 `endpoint`).
    Structured {
        /// How to talk to it: `mesh-negotiate`, `https`, `grpc`,
        /// `quic-stream` or another protocol name.
        protocol: String,
        /// The protocol-specific address.
        address: String,
        /// Auth method hint: `none`, `did-auth`, `bearer` or other.
        auth: Option<String>,
    },
}

impl Endpoint {
    /// A bare address (the form every reference reader understands).
    pub fn text(address: impl Into<String>) -> Self {
        Endpoint::Text(address.into())
    }

    /// The spec's structured form, without an auth hint.
    pub fn structured(protocol: impl Into<String>, address: impl Into<String>) -> Self {
        Endpoint::Structured {
            protocol: protocol.into(),
            address: address.into(),
            auth: None,
        }
    }

    /// Adds an auth hint, turning a bare address into the structured form
    /// with an empty protocol (the spec has no other place for the hint).
    pub fn with_auth(self, hint: impl Into<String>) -> Self {
        match self {
            Endpoint::Text(address) => Endpoint::Structured {
                protocol: String::new(),
                address,
                auth: Some(hint.into()),
            },
            Endpoint::Structured {
                protocol, address, ..
            } => Endpoint::Structured {
                protocol,
                address,
                auth: Some(hint.into()),
            },
        }
    }

    /// The address, in either form: where to connect.
    pub fn address(&self) -> &str {
        match self {
            Endpoint::Text(a) | Endpoint::Structured { address: a, .. } => a,
        }
    }

    /// The protocol, when the structured form names one.
    pub fn protocol(&self) -> Option<&str> {
        match self {
            Endpoint::Structured { protocol, .. } if !protocol.is_empty() => Some(protocol),
            _ => None,
        }
    }

    /// The auth hint, when there is one.
    pub fn auth(&self) -> Option<&str> {
        match self {
            Endpoint::Structured { auth, .. } => auth.as_deref(),
            Endpoint::Text(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Constraints

/// When, where and how the capability is available (PROTOCOL.md §5.2
/// `constraints`); every part optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Constraints {
    /// Geographic bounds.
    pub geo: Option<GeoConstraint>,
    /// Availability windows.
    pub temporal: Option<TemporalConstraint>,
    /// Current load and limits.
    pub capacity: Option<CapacityConstraint>,
    /// Cost.
    pub pricing: Option<PricingConstraint>,
}

/// Geographic bounds, in integers so that every implementation reads the
/// same values (the spec moved off floats for this reason).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoConstraint {
    /// Centre of the service area.
    pub center: Option<GeoPoint>,
    /// Service radius in meters.
    pub radius_m: Option<u64>,
    /// Named regions (ISO 3166 codes or free-form).
    pub regions: Option<Vec<String>>,
}

/// A point as `[lat, lon]` in microdegrees (1e-6°), the spec's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GeoPoint {
    lat: i32,
    lon: i32,
}

impl GeoPoint {
    /// Largest |latitude| in microdegrees (90°).
    pub const MAX_LAT: i32 = 90_000_000;
    /// Largest |longitude| in microdegrees (180°).
    pub const MAX_LON: i32 = 180_000_000;

    /// A point from microdegrees; refuses coordinates off the globe.
    pub fn from_microdegrees(lat: i32, lon: i32) -> Result<Self, PayloadError> {
        let field = "constraints.geo.center";
        for (v, max) in [(lat, Self::MAX_LAT), (lon, Self::MAX_LON)] {
            if !(-max..=max).contains(&v) {
                return Err(PayloadError::OutOfRange {
                    field,
                    value: v as i128,
                    min: -max as i128,
                    max: max as i128,
                });
            }
        }
        Ok(GeoPoint { lat, lon })
    }

    /// Latitude in microdegrees.
    pub fn lat_microdegrees(&self) -> i32 {
        self.lat
    }

    /// Longitude in microdegrees.
    pub fn lon_microdegrees(&self) -> i32 {
        self.lon
    }
}

/// When the capability is available.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemporalConstraint {
    /// Available right now?
    pub available: Option<bool>,
    /// Recurring availability windows.
    pub windows: Option<Vec<TimeWindow>>,
    /// Available until this time.
    pub until: Option<Timestamp>,
}

/// A recurring availability window (PROTOCOL.md `time-window`; all four
/// fields are required there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Opens at (local time in `tz`).
    pub start: ClockTime,
    /// Closes at (local time in `tz`).
    pub end: ClockTime,
    /// On these days.
    pub days: Vec<Weekday>,
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub tz: String,
}

/// A time of day, written `HH:MM` on the wire; `24:00` means end of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockTime {
    hour: u8,
    minute: u8,
}

impl ClockTime {
    /// A time of day; refuses anything past `24:00`.
    pub fn new(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60 || hour == 24 && minute == 0)
            .then_some(ClockTime { hour, minute })
    }

    /// The hour (0–24).
    pub fn hour(&self) -> u8 {
        self.hour
    }

    /// The minute (0–59).
    pub fn minute(&self) -> u8 {
        self.minute
    }

    fn parse(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 5 || b[2] != b':' {
            return None;
        }
        let digit = |c: u8| c.is_ascii_digit().then(|| c - b'0');
        let hour = digit(b[0])? * 10 + digit(b[1])?;
        let minute = digit(b[3])? * 10 + digit(b[4])?;
        ClockTime::new(hour, minute)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

/// A day of the week, numbered as the spec numbers them (0 = Monday).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    /// 0.
    Monday,
    /// 1.
    Tuesday,
    /// 2.
    Wednesday,
    /// 3.
    Thursday,
    /// 4.
    Friday,
    /// 5.
    Saturday,
    /// 6.
    Sunday,
}

impl Weekday {
    const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The wire number (0 = Monday … 6 = Sunday).
    pub fn number(self) -> u8 {
        self as u8
    }

    /// The day for a wire number, if it is 0..=6.
    pub fn from_number(n: u64) -> Option<Self> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// Current load and limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapacityConstraint {
    /// Utilization in permille, 0–1000 (300 = 30.0 %).
    pub current_load_permille: Option<u16>,
    /// Most parallel requests.
    pub max_concurrent: Option<u64>,
    /// Current queue depth.
    pub queue_depth: Option<u64>,
}

/// Largest `current_load_permille` (fully loaded).
pub const MAX_LOAD_PERMILLE: u16 = 1000;

/// What the capability costs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PricingConstraint {
    /// `per-request`, `per-second`, `per-token`, `per-unit`, `free` or other.
    pub model: Option<String>,
    /// ISO 4217 code or token symbol.
    pub currency: Option<String>,
    /// The price as a decimal string, so no float rounding creeps in.
    pub amount: Option<Amount>,
    /// Pricing-model specifics.
    pub details: Option<Map<String, Value>>,
}

/// A non-negative decimal number kept as text (`"0.0001"`), as the spec
/// writes prices to avoid float precision issues.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Amount(String);

impl Amount {
    /// Checks the form `digits[.digits]`.
    pub fn new(s: impl Into<String>) -> Result<Self, PayloadError> {
        let s = s.into();
        let mut parts = s.splitn(2, '.');
        let digits = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        };
        let int_ok = digits(parts.next());
        let frac = parts.next();
        if int_ok && (frac.is_none() || digits(frac)) {
            Ok(Amount(s))
        } else {
            Err(PayloadError::invalid(
                "constraints.pricing.amount",
                &s,
                "a decimal amount such as \"0.0001\"",
            ))
        }
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// ---------------------------------------------------------------------------
// The capability

/// A decoded or to-be-published `core/capability` payload.
///
/// Build one with [`Capability::new`] and the `with_*` methods, publish it
/// with [`Capability::sign`] (or [`Capability::descriptor_builder`] for full
/// control), read one with [`Capability::decode`] or
/// [`Capability::from_descriptor`].
///
/// ```
/// use mars_proto::schema::capability::{Capability, Endpoint, TypePath};
/// use mars_proto::{Keypair, Timestamp};
///
/// let cap = Capability::new(
///     TypePath::new("compute/inference/text-generation").unwrap(),
///     Endpoint::text("https://agent.example/v1/gen"),
/// )
/// .with_params(serde_json::json!({"model": "m1", "ctx": 8192}));
/// let now = Timestamp::from_secs(1_700_000_000);
/// let descriptor = cap.sign(&Keypair::from_secret_bytes(&[1; 32]), now, 1).unwrap();
/// assert_eq!(descriptor.routing_keys.len(), 3);
/// assert_eq!(Capability::from_descriptor(&descriptor).unwrap(), cap);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capability {
    type_path: TypePath,
    version: Option<u64>,
    params: Option<Value>,
    constraints: Option<Constraints>,
    endpoint: Endpoint,
    metadata: Option<Map<String, Value>>,
}

/// Which of the two live encodings a capability payload uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayloadEncoding {
    /// A JSON object (reference gateway and SDKs): the first byte is `{`.
    Json,
    /// Anything else is read as CBOR (the spec, the reference client, us).
    Cbor,
}

impl PayloadEncoding {
    /// Tells the encoding from the first byte, as WIRE.md prescribes (in
    /// CBOR, `{` would start a 27-byte text string, never a capability map).
    pub fn detect(payload: &[u8]) -> Self {
        if payload.first() == Some(&b'{') {
            PayloadEncoding::Json
        } else {
            PayloadEncoding::Cbor
        }
    }
}

/// Why a payload or descriptor is not a valid capability.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    /// The bytes break an encoding or field rule (the error names which).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// `type` is not a valid type path.
    #[error("type: {0}")]
    TypePath(#[from] TypePathError),
    /// The descriptor is of another schema, so its payload is not a capability.
    #[error("descriptor schema {found} is not core/capability")]
    WrongSchema {
        /// The descriptor's schema hash.
        found: Hash,
    },
}

impl Capability {
    /// A capability of `type_path` reachable at `endpoint`, with version
    /// [`DEFAULT_CAPABILITY_VERSION`] and no params, constraints or metadata.
    pub fn new(type_path: TypePath, endpoint: Endpoint) -> Self {
        Capability {
            type_path,
            version: Some(DEFAULT_CAPABILITY_VERSION),
            params: None,
            constraints: None,
            endpoint,
            metadata: None,
        }
    }

    /// Sets the schema version of this capability type.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Leaves `version` out, as the reference client and gateway do (their
    /// payloads then compare equal to ours after decoding).
    pub fn without_version(mut self) -> Self {
        self.version = None;
        self
    }

    /// Sets `params`: an object (the spec's form), or a string (the
    /// reference client's form, usually JSON text). `null` means none.
    pub fn with_params(mut self, params: Value) -> Self {
        self.params = (!params.is_null()).then_some(params);
        self
    }

    /// Sets the constraints.
    pub fn with_constraints(mut self, constraints: Constraints) -> Self {
        self.constraints = Some(constraints);
        self
    }

    /// Sets the free-form metadata.
    pub fn with_metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// What it is.
    pub fn type_path(&self) -> &TypePath {
        &self.type_path
    }

    /// The schema version of its type, when given.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Its parameters, when given: a JSON value from JSON payloads or CBOR
    /// maps, a string when the publisher wrote text (the reference client).
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// When, where and how it is available, when given.
    pub fn constraints(&self) -> Option<&Constraints> {
        self.constraints.as_ref()
    }

    /// How to reach it.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Free-form metadata, when given.
    pub fn metadata(&self) -> Option<&Map<String, Value>> {
        self.metadata.as_ref()
    }

    /// The hierarchical routing keys of its type (one per level).
    pub fn routing_keys(&self) -> Vec<Hash> {
        self.type_path.routing_keys()
    }

    /// The payload in CBOR: a map with keys in bytewise order, optional
    /// fields left out. With no version and text params this is byte for
    /// byte what the reference client writes.
    pub fn to_cbor(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.type_path.as_str().len());
        let n = 2
            + self.version.is_some() as usize
            + self.params.is_some() as usize
            + self.constraints.is_some() as usize
            + self.metadata.is_some() as usize;
        w(&mut out).map(n);
        if let Some(c) = &self.constraints {
            w(&mut out).key("constraints");
            write_constraints(&mut out, c);
        }
        w(&mut out).key("endpoint");
        write_endpoint(&mut out, &self.endpoint);
        if let Some(m) = &self.metadata {
            w(&mut out).key("metadata");
            payload::write_json_map(&mut out, m);
        }
        if let Some(p) = &self.params {
            w(&mut out).key("params");
            payload::write_json(&mut out, p);
        }
        let mut wr = w(&mut out);
        wr.key("type");
        wr.text(self.type_path.as_str());
        if let Some(v) = self.version {
            wr.key("version");
            wr.uint(v);
        }
        out
    }

    /// Decodes a payload in either live encoding (first byte `{`: JSON).
    pub fn decode(payload: &[u8]) -> Result<Self, CapabilityError> {
        let tree = match PayloadEncoding::detect(payload) {
            PayloadEncoding::Json => payload::parse_json(payload)?,
            PayloadEncoding::Cbor => payload::parse_cbor(payload)?,
        };
        from_tree(&tree)
    }

    /// Decodes the payload of a `core/capability` descriptor.
    pub fn from_descriptor(descriptor: &Descriptor) -> Result<Self, CapabilityError> {
        if descriptor.schema_hash != CORE_CAPABILITY.hash() {
            return Err(CapabilityError::WrongSchema {
                found: descriptor.schema_hash,
            });
        }
        Self::decode(&descriptor.payload)
    }

    /// A descriptor builder for this capability at `timestamp`: schema
    /// `core/capability`, the CBOR payload, one routing key per type level,
    /// and the type path as topic (as the reference does, so there is one
    /// replaceable slot per publisher and type). Set sequence and TTL on it,
    /// then sign.
    pub fn descriptor_builder(&self, timestamp: Timestamp) -> DescriptorBuilder {
        DescriptorBuilder::new(CORE_CAPABILITY.hash(), timestamp)
            .topic(self.type_path.as_str())
            .payload(self.to_cbor())
            .routing_keys(self.routing_keys())
    }

    /// The signed `core/capability` descriptor, with the default TTL; refused
    /// only if the payload outgrows a descriptor (huge params or metadata).
    pub fn sign(
        &self,
        key: &Keypair,
        timestamp: Timestamp,
        sequence: u64,
    ) -> Result<Descriptor, ValidationError> {
        self.descriptor_builder(timestamp)
            .sequence(sequence)
            .sign(key)
    }
}

// ---------------------------------------------------------------------------
// Decoding

const TEXT_MAX: usize = limits::MAX_PAYLOAD_LEN;

fn from_tree(tree: &Any) -> Result<Capability, CapabilityError> {
    let f = Fields::of(tree, "payload")?;
    let type_path = TypePath::new(payload::text(f.req("type", "type")?, "type", TEXT_MAX)?)?;
    let endpoint = endpoint(f.req("endpoint", "endpoint")?)?;
    let version = f
        .get("version")
        .map(|v| payload::uint(v, "version"))
        .transpose()?;
    let params = f
        .get("params")
        .map(|v| payload::to_json(v, "params"))
        .transpose()?;
    let constraints = f.get("constraints").map(constraints).transpose()?;
    let metadata = f
        .get("metadata")
        .map(|v| payload::json_map(v, "metadata"))
        .transpose()?;
    Ok(Capability {
        type_path,
        version,
        params,
        constraints,
        endpoint,
        metadata,
    })
}

fn non_empty<'a>(v: &'a Any, field: &'static str) -> Result<&'a str, PayloadError> {
    let s = payload::text(v, field, TEXT_MAX)?;
    if s.is_empty() {
        return Err(PayloadError::invalid(field, s, "a non-empty address"));
    }
    Ok(s)
}

fn endpoint(v: &Any) -> Result<Endpoint, PayloadError> {
    match v {
        Any::Text(_) => Ok(Endpoint::Text(non_empty(v, "endpoint")?.to_owned())),
        Any::Map(_) => {
            let f = Fields::of(v, "endpoint")?;
            let protocol = payload::text(
                f.req("protocol", "endpoint.protocol")?,
                "endpoint.protocol",
                TEXT_MAX,
            )?;
            let address = non_empty(f.req("address", "endpoint.address")?, "endpoint.address")?;
            let auth = f
                .get("auth")
                .map(|v| payload::text(v, "endpoint.auth", TEXT_MAX).map(str::to_owned))
                .transpose()?;
            Ok(Endpoint::Structured {
                protocol: protocol.to_owned(),
                address: address.to_owned(),
                auth,
            })
        }
        other => Err(payload::wrong(
            "endpoint",
            "text string or map {protocol, address, auth?}",
            other,
        )),
    }
}

fn constraints(v: &Any) -> Result<Constraints, PayloadError> {
    let f = Fields::of(v, "constraints")?;
    Ok(Constraints {
        geo: f.get("geo").map(geo).transpose()?,
        temporal: f.get("temporal").map(temporal).transpose()?,
        capacity: f.get("capacity").map(capacity).transpose()?,
        pricing: f.get("pricing").map(pricing).transpose()?,
    })
}

fn geo(v: &Any) -> Result<GeoConstraint, PayloadError> {
    const CENTER: &str = "constraints.geo.center";
    let f = Fields::of(v, "constraints.geo")?;
    let center = match f.get("center") {
        None => None,
        Some(c) => match payload::array(c, CENTER)? {
            [lat, lon] => Some(GeoPoint::from_microdegrees(
                microdegrees(lat, GeoPoint::MAX_LAT)?,
                microdegrees(lon, GeoPoint::MAX_LON)?,
            )?),
            _ => return Err(payload::wrong(CENTER, "[lat, lon] (two numbers)", c)),
        },
    };
    // The earlier draft's `radius_km` (a float) is read when `radius_m` is absent.
    let radius_m = match (f.get("radius_m"), f.get("radius_km")) {
        (Some(m), _) => Some(payload::uint(m, "constraints.geo.radius_m")?),
        (None, Some(km)) => {
            const KM: &str = "constraints.geo.radius_km";
            let m = legacy_scaled(km, KM, 1000.0)?;
            Some(u64::try_from(m).map_err(|_| PayloadError::OutOfRange {
                field: KM,
                value: m,
                min: 0,
                max: u64::MAX as i128,
            })?)
        }
        (None, None) => None,
    };
    let regions = f
        .get("regions")
        .map(|r| {
            payload::array(r, "constraints.geo.regions")?
                .iter()
                .map(|s| payload::text(s, "constraints.geo.regions", TEXT_MAX).map(str::to_owned))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(GeoConstraint {
        center,
        radius_m,
        regions,
    })
}

/// A coordinate: an integer in microdegrees (the spec), or a float in
/// degrees (the earlier draft), converted.
fn microdegrees(v: &Any, max: i32) -> Result<i32, PayloadError> {
    const FIELD: &str = "constraints.geo.center";
    let value = match v {
        Any::Float(_) => legacy_scaled(v, FIELD, 1e6)?,
        _ => payload::int(v, FIELD)?,
    };
    if !(-(max as i128)..=max as i128).contains(&value) {
        return Err(PayloadError::OutOfRange {
            field: FIELD,
            value,
            min: -(max as i128),
            max: max as i128,
        });
    }
    Ok(value as i32)
}

/// A number of the earlier draft (a float), scaled to the integer unit of
/// the spec and rounded; the caller checks the range.
fn legacy_scaled(v: &Any, field: &'static str, scale: f64) -> Result<i128, PayloadError> {
    let f = match v {
        Any::Float(f) => *f,
        Any::Uint(u) => *u as f64,
        other => return Err(payload::wrong(field, "number", other)),
    };
    let scaled = (f * scale).round();
    // 1e30 fits an i128 with room to spare; anything larger is out of every range.
    if !scaled.is_finite() || scaled.abs() > 1e30 {
        return Err(PayloadError::invalid(
            field,
            &f.to_string(),
            "a finite number in range",
        ));
    }
    Ok(scaled as i128)
}

fn temporal(v: &Any) -> Result<TemporalConstraint, PayloadError> {
    let f = Fields::of(v, "constraints.temporal")?;
    Ok(TemporalConstraint {
        available: f
            .get("available")
            .map(|b| payload::boolean(b, "constraints.temporal.available"))
            .transpose()?,
        windows: f
            .get("windows")
            .map(|ws| {
                payload::array(ws, "constraints.temporal.windows")?
                    .iter()
                    .map(time_window)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
        until: f
            .get("until")
            .map(|u| payload::uint(u, "constraints.temporal.until").map(Timestamp::from_micros))
            .transpose()?,
    })
}

fn time_window(v: &Any) -> Result<TimeWindow, PayloadError> {
    const AT: &str = "constraints.temporal.windows[]";
    let f = Fields::of(v, AT)?;
    let clock = |name: &str, field: &'static str| -> Result<ClockTime, PayloadError> {
        let s = payload::text(f.req(name, field)?, field, TEXT_MAX)?;
        ClockTime::parse(s).ok_or_else(|| {
            PayloadError::invalid(field, s, "a time of day as HH:MM (00:00 to 24:00)")
        })
    };
    let start = clock("start", "constraints.temporal.windows[].start")?;
    let end = clock("end", "constraints.temporal.windows[].end")?;
    const DAYS: &str = "constraints.temporal.windows[].days";
    let days = payload::array(f.req("days", DAYS)?, DAYS)?
        .iter()
        .map(|d| {
            let n = payload::uint(d, DAYS)?;
            Weekday::from_number(n).ok_or(PayloadError::OutOfRange {
                field: DAYS,
                value: n as i128,
                min: 0,
                max: 6,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    const TZ: &str = "constraints.temporal.windows[].tz";
    let tz = payload::text(f.req("tz", TZ)?, TZ, TEXT_MAX)?.to_owned();
    Ok(TimeWindow {
        start,
        end,
        days,
        tz,
    })
}

fn capacity(v: &Any) -> Result<CapacityConstraint, PayloadError> {
    const LOAD: &str = "constraints.capacity.current_load_permille";
    let f = Fields::of(v, "constraints.capacity")?;
    // The earlier draft's `current_load` (a 0.0–1.0 float) is read when
    // `current_load_permille` is absent.
    let load = match (f.get("current_load_permille"), f.get("current_load")) {
        (Some(p), _) => Some(payload::uint(p, LOAD)? as i128),
        (None, Some(l)) => Some(legacy_scaled(
            l,
            "constraints.capacity.current_load",
            1000.0,
        )?),
        (None, None) => None,
    };
    let current_load_permille = match load {
        Some(p) if !(0..=MAX_LOAD_PERMILLE as i128).contains(&p) => {
            return Err(PayloadError::OutOfRange {
                field: LOAD,
                value: p,
                min: 0,
                max: MAX_LOAD_PERMILLE as i128,
            });
        }
        Some(p) => Some(p as u16),
        None => None,
    };
    Ok(CapacityConstraint {
        current_load_permille,
        max_concurrent: f
            .get("max_concurrent")
            .map(|v| payload::uint(v, "constraints.capacity.max_concurrent"))
            .transpose()?,
        queue_depth: f
            .get("queue_depth")
            .map(|v| payload::uint(v, "constraints.capacity.queue_depth"))
            .transpose()?,
    })
}

fn pricing(v: &Any) -> Result<PricingConstraint, PayloadError> {
    let f = Fields::of(v, "constraints.pricing")?;
    let text = |name: &str, field: &'static str| {
        f.get(name)
            .map(|v| payload::text(v, field, TEXT_MAX).map(str::to_owned))
            .transpose()
    };
    Ok(PricingConstraint {
        model: text("model", "constraints.pricing.model")?,
        currency: text("currency", "constraints.pricing.currency")?,
        amount: text("amount", "constraints.pricing.amount")?
            .map(Amount::new)
            .transpose()?,
        details: f
            .get("details")
            .map(|d| payload::json_map(d, "constraints.pricing.details"))
            .transpose()?,
    })
}

// ---------------------------------------------------------------------------
// Encoding (every map's keys in bytewise order)

fn write_endpoint(out: &mut Vec<u8>, e: &Endpoint) {
    let mut wr = w(out);
    match e {
        Endpoint::Text(a) => wr.text(a),
        Endpoint::Structured {
            protocol,
            address,
            auth,
        } => {
            wr.map(2 + auth.is_some() as usize);
            wr.key("address");
            wr.text(address);
            if let Some(a) = auth {
                wr.key("auth");
                wr.text(a);
            }
            wr.key("protocol");
            wr.text(protocol);
        }
    }
}

fn write_constraints(out: &mut Vec<u8>, c: &Constraints) {
    let n = c.capacity.is_some() as usize
        + c.geo.is_some() as usize
        + c.pricing.is_some() as usize
        + c.temporal.is_some() as usize;
    w(out).map(n);
    if let Some(cap) = &c.capacity {
        w(out).key("capacity");
        let n = cap.current_load_permille.is_some() as usize
            + cap.max_concurrent.is_some() as usize
            + cap.queue_depth.is_some() as usize;
        let mut wr = w(out);
        wr.map(n);
        if let Some(p) = cap.current_load_permille {
            wr.key("current_load_permille");
            wr.uint(p as u64);
        }
        if let Some(m) = cap.max_concurrent {
            wr.key("max_concurrent");
            wr.uint(m);
        }
        if let Some(q) = cap.queue_depth {
            wr.key("queue_depth");
            wr.uint(q);
        }
    }
    if let Some(g) = &c.geo {
        w(out).key("geo");
        let n = g.center.is_some() as usize
            + g.radius_m.is_some() as usize
            + g.regions.is_some() as usize;
        w(out).map(n);
        if let Some(p) = g.center {
            let mut wr = w(out);
            wr.key("center");
            wr.array(2);
            payload::write_int(out, p.lat as i64);
            payload::write_int(out, p.lon as i64);
        }
        let mut wr = w(out);
        if let Some(r) = g.radius_m {
            wr.key("radius_m");
            wr.uint(r);
        }
        if let Some(rs) = &g.regions {
            wr.key("regions");
            wr.array(rs.len());
            for r in rs {
                wr.text(r);
            }
        }
    }
    if let Some(p) = &c.pricing {
        w(out).key("pricing");
        let n = p.amount.is_some() as usize
            + p.currency.is_some() as usize
            + p.details.is_some() as usize
            + p.model.is_some() as usize;
        let mut wr = w(out);
        wr.map(n);
        if let Some(a) = &p.amount {
            wr.key("amount");
            wr.text(a.as_str());
        }
        if let Some(c) = &p.currency {
            wr.key("currency");
            wr.text(c);
        }
        if let Some(d) = &p.details {
            w(out).key("details");
            payload::write_json_map(out, d);
        }
        if let Some(m) = &p.model {
            let mut wr = w(out);
            wr.key("model");
            wr.text(m);
        }
    }
    if let Some(t) = &c.temporal {
        w(out).key("temporal");
        let n = t.available.is_some() as usize
            + t.until.is_some() as usize
            + t.windows.is_some() as usize;
        let mut wr = w(out);
        wr.map(n);
        if let Some(a) = t.available {
            wr.key("available");
            wr.bool(a);
        }
        if let Some(u) = t.until {
            wr.key("until");
            wr.uint(u.as_micros());
        }
        if let Some(ws) = &t.windows {
            wr.key("windows");
            wr.array(ws.len());
            for win in ws {
                wr.map(4);
                wr.key("days");
                wr.array(win.days.len());
                for d in &win.days {
                    wr.uint(d.number() as u64);
                }
                wr.key("end");
                wr.text(&win.end.to_string());
                wr.key("start");
                wr.text(&win.start.to_string());
                wr.key("tz");
                wr.text(&win.tz);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CborError;
    use proptest::prelude::*;
    use serde_json::json;

    fn tp(s: &str) -> TypePath {
        TypePath::new(s).unwrap()
    }

    fn full() -> Capability {
        Capability::new(
            tp("compute/inference/text-generation"),
            Endpoint::structured("mesh-negotiate", "quic://198.51.100.42:4433")
                .with_auth("did-auth"),
        )
        .with_version(3)
        .with_params(json!({"models": ["qwen3:8b"], "max_context": 32768, "temp": 0.5, "neg": -3}))
        .with_constraints(Constraints {
            geo: Some(GeoConstraint {
                center: Some(GeoPoint::from_microdegrees(37_774_900, -122_419_400).unwrap()),
                radius_m: Some(100_000),
                regions: Some(vec!["US".into(), "CA".into()]),
            }),
            temporal: Some(TemporalConstraint {
                available: Some(true),
                windows: Some(vec![TimeWindow {
                    start: ClockTime::new(9, 0).unwrap(),
                    end: ClockTime::new(24, 0).unwrap(),
                    days: vec![Weekday::Monday, Weekday::Sunday],
                    tz: "Europe/Berlin".into(),
                }]),
                until: Some(Timestamp::from_secs(1_800_000_000)),
            }),
            capacity: Some(CapacityConstraint {
                current_load_permille: Some(300),
                max_concurrent: Some(10),
                queue_depth: Some(0),
            }),
            pricing: Some(PricingConstraint {
                model: Some("per-token".into()),
                currency: Some("USD".into()),
                amount: Some(Amount::new("0.0001").unwrap()),
                details: Some(json!({"min": 1}).as_object().unwrap().clone()),
            }),
        })
        .with_metadata(
            json!({"name": "agent", "tags": ["a", "b"]})
                .as_object()
                .unwrap()
                .clone(),
        )
    }

    #[test]
    fn type_path_rules() {
        assert_eq!(TypePath::new(""), Err(TypePathError::Empty));
        assert_eq!(
            TypePath::new("/a"),
            Err(TypePathError::EmptySegment { index: 0 })
        );
        assert_eq!(
            TypePath::new("a/"),
            Err(TypePathError::EmptySegment { index: 1 })
        );
        assert_eq!(
            TypePath::new("a//b"),
            Err(TypePathError::EmptySegment { index: 1 })
        );
        assert!(TypePath::new("1/2/3/4/5/6/7/8").is_ok());
        assert_eq!(
            TypePath::new("1/2/3/4/5/6/7/8/9"),
            Err(TypePathError::TooManyLevels { levels: 9, max: 8 })
        );
        assert_eq!(
            TypePath::new("a".repeat(256)),
            Err(TypePathError::TooLong { len: 256, max: 255 })
        );
        assert!(TypePath::new("a".repeat(255)).is_ok());
        let p: TypePath = "compute/inference/text-generation".parse().unwrap();
        assert_eq!(p.levels(), 3);
        assert_eq!(
            p.prefixes().collect::<Vec<_>>(),
            [
                "compute",
                "compute/inference",
                "compute/inference/text-generation"
            ]
        );
        assert_eq!(p.routing_keys(), hierarchical_keys(p.as_str()));
        assert_eq!(
            p.routing_key(),
            routing_key("compute/inference/text-generation")
        );
        assert_eq!(p.to_string(), p.as_str());
    }

    #[test]
    fn full_capability_round_trips() {
        let cap = full();
        let bytes = cap.to_cbor();
        assert_eq!(Capability::decode(&bytes).unwrap(), cap);
        assert_eq!(PayloadEncoding::detect(&bytes), PayloadEncoding::Cbor);
    }

    #[test]
    fn reference_client_bytes_are_reproduced() {
        // publish_capability("compute/analysis/code-review", "https://agent.example/review", None)
        let cap = Capability::new(
            tp("compute/analysis/code-review"),
            Endpoint::text("https://agent.example/review"),
        )
        .without_version();
        assert_eq!(
            hex::encode(cap.to_cbor()),
            "a268656e64706f696e74781c68747470733a2f2f6167656e742e6578616d706c652f7265766965776474797065781c636f6d707574652f616e616c797369732f636f64652d726576696577"
        );
    }

    #[test]
    fn json_payload_with_spec_fields() {
        let payload = br#"{"type":"a/b","version":2,"endpoint":{"protocol":"https","address":"https://x","auth":"bearer"},
            "params":[1,2],"unknown":{"deep":[null]},
            "constraints":{"geo":{"center":[37.7749,-122.4194],"radius_km":1.5},
                           "capacity":{"current_load":0.3},
                           "temporal":{"windows":[{"start":"08:30","end":"17:00","days":[0,4],"tz":"UTC"}]},
                           "pricing":{"amount":"12","details":{"k":"v"}}},
            "metadata":{"owner":"me"}}"#;
        let cap = Capability::decode(payload).unwrap();
        assert_eq!(cap.type_path().as_str(), "a/b");
        assert_eq!(cap.version(), Some(2));
        assert_eq!(cap.endpoint().address(), "https://x");
        assert_eq!(cap.endpoint().protocol(), Some("https"));
        assert_eq!(cap.endpoint().auth(), Some("bearer"));
        assert_eq!(cap.params(), Some(&json!([1, 2])));
        let c = cap.constraints().unwrap();
        let geo = c.geo.as_ref().unwrap();
        let center = geo.center.unwrap();
        assert_eq!(
            (center.lat_microdegrees(), center.lon_microdegrees()),
            (37_774_900, -122_419_400)
        );
        assert_eq!(geo.radius_m, Some(1500));
        assert_eq!(
            c.capacity.as_ref().unwrap().current_load_permille,
            Some(300)
        );
        let win = &c.temporal.as_ref().unwrap().windows.as_ref().unwrap()[0];
        assert_eq!(win.start.to_string(), "08:30");
        assert_eq!(win.days, [Weekday::Monday, Weekday::Friday]);
        assert_eq!(
            c.pricing
                .as_ref()
                .unwrap()
                .amount
                .as_ref()
                .unwrap()
                .as_str(),
            "12"
        );
        assert_eq!(cap.metadata().unwrap()["owner"], "me");
        // And it survives re-encoding to CBOR.
        assert_eq!(Capability::decode(&cap.to_cbor()).unwrap(), cap);
    }

    #[test]
    fn null_means_absent() {
        let cap =
            Capability::decode(br#"{"type":"a","endpoint":"e","params":null,"version":null}"#)
                .unwrap();
        assert_eq!(cap.params(), None);
        assert_eq!(cap.version(), None);
        assert_eq!(
            Capability::new(tp("a"), Endpoint::text("e"))
                .with_params(Value::Null)
                .params(),
            None
        );
    }

    fn err(payload: &[u8]) -> CapabilityError {
        Capability::decode(payload).unwrap_err()
    }

    fn perr(payload: &[u8]) -> PayloadError {
        match err(payload) {
            CapabilityError::Payload(p) => p,
            other => panic!("expected a payload error, got {other:?}"),
        }
    }

    #[test]
    fn every_error_names_field_and_rule() {
        assert_eq!(
            perr(br#"{"endpoint":"e"}"#),
            PayloadError::MissingField { field: "type" }
        );
        assert_eq!(
            perr(br#"{"type":"a"}"#),
            PayloadError::MissingField { field: "endpoint" }
        );
        assert_eq!(
            perr(br#"{"type":1,"endpoint":"e"}"#),
            PayloadError::WrongType {
                field: "type",
                expected: "text string",
                found: "unsigned integer"
            }
        );
        assert_eq!(
            err(br#"{"type":"a//b","endpoint":"e"}"#),
            CapabilityError::TypePath(TypePathError::EmptySegment { index: 1 })
        );
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":[]}"#),
            PayloadError::WrongType {
                field: "endpoint",
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":""}"#),
            PayloadError::Invalid {
                field: "endpoint",
                ..
            }
        ));
        assert_eq!(
            perr(br#"{"type":"a","endpoint":{"address":"x"}}"#),
            PayloadError::MissingField {
                field: "endpoint.protocol"
            }
        );
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","version":-1}"#),
            PayloadError::WrongType {
                field: "version",
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","metadata":[1]}"#),
            PayloadError::WrongType {
                field: "metadata",
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"geo":{"center":[1]}}}"#),
            PayloadError::WrongType {
                field: "constraints.geo.center",
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"geo":{"center":[90000001,0]}}}"#),
            PayloadError::OutOfRange {
                field: "constraints.geo.center",
                value: 90_000_001,
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"geo":{"center":[0,-180.5]}}}"#),
            PayloadError::OutOfRange {
                field: "constraints.geo.center",
                ..
            }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"capacity":{"current_load_permille":1001}}}"#),
            PayloadError::OutOfRange { field: "constraints.capacity.current_load_permille", .. }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"temporal":{"windows":[{"start":"9:00","end":"10:00","days":[],"tz":"UTC"}]}}}"#),
            PayloadError::Invalid { field: "constraints.temporal.windows[].start", .. }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"temporal":{"windows":[{"start":"09:00","end":"24:01","days":[],"tz":"UTC"}]}}}"#),
            PayloadError::Invalid { field: "constraints.temporal.windows[].end", .. }
        ));
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"temporal":{"windows":[{"start":"09:00","end":"10:00","days":[7],"tz":"UTC"}]}}}"#),
            PayloadError::OutOfRange { field: "constraints.temporal.windows[].days", value: 7, .. }
        ));
        assert_eq!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"temporal":{"windows":[{"start":"09:00","end":"10:00","days":[]}]}}}"#),
            PayloadError::MissingField { field: "constraints.temporal.windows[].tz" }
        );
        assert!(matches!(
            perr(br#"{"type":"a","endpoint":"e","constraints":{"pricing":{"amount":"1e5"}}}"#),
            PayloadError::Invalid {
                field: "constraints.pricing.amount",
                ..
            }
        ));
        assert!(matches!(perr(b"{"), PayloadError::Json { .. }));
        assert!(matches!(
            perr(b""),
            PayloadError::Cbor {
                source: CborError::UnexpectedEnd,
                ..
            }
        ));
        assert_eq!(
            perr(&[0x01]),
            PayloadError::WrongType {
                field: "payload",
                expected: "map",
                found: "unsigned integer"
            }
        );
        // CBOR params holding a byte string cannot be kept as JSON.
        assert_eq!(
            perr(&hex::decode("a36474797065616168656e64706f696e74616566706172616d7341ff").unwrap()),
            PayloadError::NotJson {
                field: "params",
                what: "byte string"
            }
        );
        let mut d = full()
            .sign(
                &Keypair::from_secret_bytes(&[1; 32]),
                Timestamp::from_secs(1),
                0,
            )
            .unwrap();
        d.schema_hash = super::super::CORE_REVOCATION.hash();
        assert!(matches!(
            Capability::from_descriptor(&d),
            Err(CapabilityError::WrongSchema { .. })
        ));
    }

    #[test]
    fn amounts_and_clock_times() {
        for ok in ["0", "12", "0.0001", "10.50"] {
            assert!(Amount::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".5", "5.", "-1", "1.2.3", "1e5", " 1"] {
            assert!(Amount::new(bad).is_err(), "{bad}");
        }
        assert_eq!(ClockTime::parse("00:00"), ClockTime::new(0, 0));
        assert_eq!(ClockTime::parse("23:59"), ClockTime::new(23, 59));
        assert!(ClockTime::parse("24:00").is_some());
        for bad in ["24:01", "12:60", "1:00", "12-00", "ab:cd", "12:000"] {
            assert!(ClockTime::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Weekday::from_number(6), Some(Weekday::Sunday));
        assert_eq!(Weekday::from_number(7), None);
        assert_eq!(Weekday::from_number(u64::MAX), None);
    }

    #[test]
    fn signed_descriptor_is_valid_and_routed_hierarchically() {
        let key = Keypair::from_secret_bytes(&[9; 32]);
        let now = Timestamp::from_secs(1_700_000_000);
        let cap = full();
        let d = cap.sign(&key, now, 7).unwrap();
        let valid = d.validate(now).unwrap();
        assert_eq!(valid.schema_hash, CORE_CAPABILITY.hash());
        assert_eq!(valid.topic, "compute/inference/text-generation");
        assert_eq!(valid.sequence, 7);
        assert_eq!(
            valid.routing_keys,
            hierarchical_keys("compute/inference/text-generation")
        );
        assert_eq!(Capability::from_descriptor(&valid).unwrap(), cap);
        // Params too large for a descriptor are refused at signing.
        let huge = Capability::new(tp("a"), Endpoint::text("e"))
            .with_params(Value::String("x".repeat(70_000)));
        assert!(matches!(
            huge.sign(&key, now, 0),
            Err(ValidationError::PayloadTooLarge { .. })
        ));
    }

    // ---- proptest ---------------------------------------------------------

    fn json_leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            // Dyadic fractions survive JSON text exactly, too.
            (any::<i16>(), 0u32..8).prop_map(|(m, e)| Value::from(m as f64 / (1u64 << e) as f64)),
            "[a-z0-9 ]{0,8}".prop_map(Value::String),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        json_leaf().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn json_map() -> impl Strategy<Value = Map<String, Value>> {
        prop::collection::btree_map("[a-z_]{0,6}", json_value(), 0..4)
            .prop_map(|m| m.into_iter().collect())
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9:/._-]{1,12}"
    }

    fn type_path() -> impl Strategy<Value = TypePath> {
        prop::collection::vec("[a-z0-9-]{1,8}", 1..=8)
            .prop_map(|s| TypePath::new(s.join("/")).unwrap())
    }

    fn endpoint() -> impl Strategy<Value = Endpoint> {
        prop_oneof![
            text().prop_map(Endpoint::Text),
            ("[a-z-]{0,8}", text(), prop::option::of(text())).prop_map(
                |(protocol, address, auth)| {
                    Endpoint::Structured {
                        protocol,
                        address,
                        auth,
                    }
                }
            ),
        ]
    }

    fn clock() -> impl Strategy<Value = ClockTime> {
        (0u8..=24, 0u8..60).prop_map(|(h, m)| {
            ClockTime::new(h, m).unwrap_or(ClockTime {
                hour: 24,
                minute: 0,
            })
        })
    }

    fn constraints() -> impl Strategy<Value = Constraints> {
        let geo = (
            prop::option::of((
                -GeoPoint::MAX_LAT..=GeoPoint::MAX_LAT,
                -GeoPoint::MAX_LON..=GeoPoint::MAX_LON,
            )),
            prop::option::of(any::<u64>()),
            prop::option::of(prop::collection::vec(text(), 0..3)),
        )
            .prop_map(|(c, radius_m, regions)| GeoConstraint {
                center: c.map(|(a, o)| GeoPoint::from_microdegrees(a, o).unwrap()),
                radius_m,
                regions,
            });
        let window = (
            clock(),
            clock(),
            prop::collection::vec(0u64..7, 0..7),
            text(),
        )
            .prop_map(|(start, end, days, tz)| TimeWindow {
                start,
                end,
                days: days.into_iter().filter_map(Weekday::from_number).collect(),
                tz,
            });
        let temporal = (
            prop::option::of(any::<bool>()),
            prop::option::of(prop::collection::vec(window, 0..3)),
            prop::option::of(any::<u64>().prop_map(Timestamp::from_micros)),
        )
            .prop_map(|(available, windows, until)| TemporalConstraint {
                available,
                windows,
                until,
            });
        let capacity = (
            prop::option::of(0u16..=MAX_LOAD_PERMILLE),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
        )
            .prop_map(|(current_load_permille, max_concurrent, queue_depth)| {
                CapacityConstraint {
                    current_load_permille,
                    max_concurrent,
                    queue_depth,
                }
            });
        let pricing = (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of("[0-9]{1,4}(\\.[0-9]{1,4})?".prop_map(|a| Amount::new(a).unwrap())),
            prop::option::of(json_map()),
        )
            .prop_map(|(model, currency, amount, details)| PricingConstraint {
                model,
                currency,
                amount,
                details,
            });
        (
            prop::option::of(geo),
            prop::option::of(temporal),
            prop::option::of(capacity),
            prop::option::of(pricing),
        )
            .prop_map(|(geo, temporal, capacity, pricing)| Constraints {
                geo,
                temporal,
                capacity,
                pricing,
            })
    }

    fn capability() -> impl Strategy<Value = Capability> {
        (
            type_path(),
            endpoint(),
            prop::option::of(any::<u64>()),
            prop::option::of(json_value()),
            prop::option::of(constraints()),
            prop::option::of(json_map()),
        )
            .prop_map(|(t, e, version, params, constraints, metadata)| {
                let mut c = Capability::new(t, e);
                c.version = version;
                if let Some(p) = params {
                    c = c.with_params(p);
                }
                c.constraints = constraints;
                c.metadata = metadata;
                c
            })
    }

    /// The capability as the JSON encoding carries it (test-only: we emit CBOR).
    fn to_json(c: &Capability) -> Value {
        let mut m = Map::new();
        m.insert("type".into(), c.type_path.as_str().into());
        m.insert(
            "endpoint".into(),
            match &c.endpoint {
                Endpoint::Text(a) => a.clone().into(),
                Endpoint::Structured {
                    protocol,
                    address,
                    auth,
                } => {
                    let mut e = json!({"protocol": protocol, "address": address});
                    if let Some(a) = auth {
                        e["auth"] = a.clone().into();
                    }
                    e
                }
            },
        );
        if let Some(v) = c.version {
            m.insert("version".into(), v.into());
        }
        if let Some(p) = &c.params {
            m.insert("params".into(), p.clone());
        }
        if let Some(md) = &c.metadata {
            m.insert("metadata".into(), Value::Object(md.clone()));
        }
        if let Some(cs) = &c.constraints {
            // Reuse the CBOR encoder's shape: decode our own CBOR constraints
            // into JSON through the value tree.
            let mut out = Vec::new();
            write_constraints(&mut out, cs);
            let tree = payload::parse_cbor(&out).unwrap();
            m.insert(
                "constraints".into(),
                payload::to_json(&tree, "constraints").unwrap(),
            );
        }
        Value::Object(m)
    }

    proptest! {
        #[test]
        fn cbor_round_trip(cap in capability()) {
            let bytes = cap.to_cbor();
            prop_assert_eq!(Capability::decode(&bytes).unwrap(), cap);
        }

        #[test]
        fn json_round_trip(cap in capability()) {
            let bytes = serde_json::to_vec(&to_json(&cap)).unwrap();
            prop_assert_eq!(Capability::decode(&bytes).unwrap(), cap);
        }

        #[test]
        fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Capability::decode(&bytes);
            let mut json = vec![b'{'];
            json.extend_from_slice(&bytes);
            let _ = Capability::decode(&json);
        }

        #[test]
        fn mutated_payloads_never_panic(cap in capability(), idx in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut bytes = cap.to_cbor();
            let i = idx.index(bytes.len());
            bytes[i] = byte;
            let _ = Capability::decode(&bytes);
            bytes.truncate(i);
            let _ = Capability::decode(&bytes);
        }
    }
}
