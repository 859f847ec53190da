//! EmojiWorld subjects (architecture.md §8): real emoji artwork from `emoji-datasource-google`
//! (Noto Emoji, Apache-2.0) and `emoji-datasource-twitter` (Twemoji, CC-BY-4.0), version 16.0.0,
//! fetched at set-up by `scripts/fetch-assets`.
//!
//! A *class* is one codepoint with a class noun taken from its Unicode name ("TEAPOT" → teapot,
//! "DOG FACE" → dog). A *subject* is one class drawn by one vendor: the Noto teapot and the Twemoji
//! teapot are two instances of the class teapot, as DreamBench has a class noun and a particular
//! instance that only the demonstrations show. Only objects, animals, food, plants and vehicles are
//! used; flags, symbols, faces and people are not.
//!
//! **The split** is fixed and by codepoint, so both vendors of a class fall on the same side:
//! FNV-1a-64 of the `unified` codepoint string, modulo 10 — 0 to 7 train, 8 validation, 9 held-out.
//! Held-out classes never reach the synthetic web, training or tuning.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::image::RgbaImage;
use crate::rng::fnv1a64;

/// Who drew a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    /// Noto Emoji (Google), Apache-2.0.
    Noto,
    /// Twemoji (Twitter), CC-BY-4.0.
    Twemoji,
}

impl Vendor {
    /// Both vendors.
    pub const ALL: [Vendor; 2] = [Vendor::Noto, Vendor::Twemoji];

    /// Short name used in subject ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Noto => "noto",
            Self::Twemoji => "twemoji",
        }
    }

    /// Folder of this vendor's artwork in the assets cache.
    fn folder(self) -> &'static str {
        match self {
            Self::Noto => "google",
            Self::Twemoji => "twitter",
        }
    }
}

/// DreamBench's distinction: live subjects also get the accessorisation prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// Animals.
    Live,
    /// Everything else.
    Object,
}

/// Broad category, for reporting and page wording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Animals.
    Animal,
    /// Plants and flowers.
    Plant,
    /// Food and drink.
    Food,
    /// Cars, trains, boats, aircraft.
    Vehicle,
    /// Other objects.
    Object,
}

/// Which side of the fixed split a class is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Crawled, trained and tuned on.
    Train,
    /// For tuning and early checks.
    Validation,
    /// Evaluation only: never crawled, trained or tuned on.
    HeldOut,
}

impl Split {
    /// The split of a codepoint (see the module docs).
    pub fn of(unified: &str) -> Self {
        match fnv1a64(unified.as_bytes()) % 10 {
            0..=7 => Self::Train,
            8 => Self::Validation,
            _ => Self::HeldOut,
        }
    }
}

/// One codepoint usable as a subject class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectClass {
    /// Codepoint(s), as in emoji.json (`1F375`).
    pub unified: String,
    /// Unicode name (`TEAPOT`).
    pub name: String,
    /// Short name (`teapot`), unique.
    pub short_name: String,
    /// Class noun for prompts and captions.
    pub noun: String,
    /// Broad category.
    pub category: Category,
    /// Live or object.
    pub kind: SubjectKind,
    /// Split.
    pub split: Split,
    /// Image file name within a vendor's 64-pixel folder.
    pub image: String,
}

/// One subject instance: a class drawn by a vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The class.
    pub class: Arc<SubjectClass>,
    /// The vendor.
    pub vendor: Vendor,
}

impl Subject {
    /// Stable id, `teapot-noto`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.class.short_name, self.vendor.as_str())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.class.noun, self.id())
    }
}

#[derive(Debug, Deserialize)]
struct RawEmoji {
    name: Option<String>,
    unified: String,
    image: String,
    short_name: String,
    category: String,
    subcategory: String,
    #[serde(default)]
    has_img_google: bool,
    #[serde(default)]
    has_img_twitter: bool,
}

/// Subcategories of "Objects" that hold symbols or abstract things rather than objects.
const EXCLUDED_OBJECT_SUBCATEGORIES: [&str; 4] = ["money", "sound", "music", "other-object"];

/// Words in a name that mark a sign, symbol, place or part rather than a whole object.
const EXCLUDED_NAME_WORDS: [&str; 22] = [
    "SIGN",
    "SYMBOL",
    "ARROW",
    "CHART",
    "STATION",
    "STOP",
    "TRACK",
    "MOTORWAY",
    "TRAFFIC",
    "ONCOMING",
    "CANCELLATION",
    "PRINTS",
    "NOSE",
    "WEB",
    "WINGS",
    "FLUTTERING",
    "DEPARTURE",
    "ARRIVING",
    "REVOLVING",
    "BALLOT",
    "E-MAIL",
    "DIVIDERS",
];

/// Class nouns that the generic rule (last word of the name) gets wrong.
const NOUN_OVERRIDES: [(&str, &str); 37] = [
    ("CLAPPER BOARD", "clapperboard"),
    ("HOT DOG", "hot dog"),
    ("HOT PEPPER", "pepper"),
    ("FIRE ENGINE", "fire engine"),
    ("FRENCH FRIES", "fries"),
    ("ICE CREAM", "ice cream"),
    ("SOFT ICE CREAM", "ice cream"),
    ("SHAVED ICE", "shaved ice"),
    ("EAR OF MAIZE", "corn"),
    ("EAR OF RICE", "rice"),
    ("SLICE OF PIZZA", "pizza"),
    ("MEAT ON BONE", "meat"),
    ("POULTRY LEG", "drumstick"),
    ("HOCHO", "knife"),
    ("AUBERGINE", "eggplant"),
    ("SPIRAL SHELL", "shell"),
    ("LADY BEETLE", "ladybug"),
    ("POT OF FOOD", "pot"),
    ("CURRY AND RICE", "curry"),
    ("FORK AND KNIFE", "cutlery"),
    ("FORK AND KNIFE WITH PLATE", "plate"),
    ("SAKE BOTTLE AND CUP", "sake bottle"),
    ("BOTTLE WITH POPPING CORK", "bottle"),
    ("TEACUP WITHOUT HANDLE", "teacup"),
    ("WOMANS CLOTHES", "blouse"),
    ("COUCH AND LAMP", "couch"),
    ("HAMMER AND WRENCH", "tools"),
    ("NUT AND BOLT", "bolt"),
    ("BOW AND ARROW", "bow"),
    ("GEM STONE", "gem"),
    ("MOYAI", "statue"),
    ("LEFT-POINTING MAGNIFYING GLASS", "magnifying glass"),
    ("RIGHT-POINTING MAGNIFYING GLASS", "magnifying glass"),
    ("RECREATIONAL VEHICLE", "camper van"),
    ("ARTICULATED LORRY", "truck"),
    ("TEDDY BEAR", "teddy bear"),
    ("HONEY POT", "honey pot"),
];

/// The class noun of a Unicode emoji name.
pub fn class_noun(name: &str) -> String {
    let upper = name.to_uppercase();
    if let Some((_, noun)) = NOUN_OVERRIDES.iter().find(|(n, _)| *n == upper) {
        return noun.to_string();
    }
    let mut core = upper.as_str();
    for cut in [" WITH ", " AND ", " WITHOUT "] {
        if let Some(i) = core.find(cut) {
            core = &core[..i];
        }
    }
    if let Some(i) = core.find(" OF ") {
        core = &core[i + 4..];
    }
    let core = core.strip_suffix(" FACE").unwrap_or(core);
    let last = core.split_whitespace().last().unwrap_or(core);
    let last = last.strip_prefix("WOMANS").unwrap_or(last);
    let last = last.strip_prefix("MANS").unwrap_or(last);
    last.to_lowercase()
}

fn classify(raw: &RawEmoji) -> Option<(Category, SubjectKind)> {
    let sub = raw.subcategory.as_str();
    match raw.category.as_str() {
        "Animals & Nature" if sub.starts_with("animal-") => {
            Some((Category::Animal, SubjectKind::Live))
        }
        "Animals & Nature" if sub.starts_with("plant-") => {
            Some((Category::Plant, SubjectKind::Object))
        }
        "Food & Drink" if sub == "dishware" => Some((Category::Object, SubjectKind::Object)),
        "Food & Drink" => Some((Category::Food, SubjectKind::Object)),
        "Travel & Places" if sub.starts_with("transport-") => {
            Some((Category::Vehicle, SubjectKind::Object))
        }
        "Objects" if !EXCLUDED_OBJECT_SUBCATEGORIES.contains(&sub) => {
            Some((Category::Object, SubjectKind::Object))
        }
        _ => None,
    }
}

/// Why the catalog or an image could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The assets have not been fetched.
    #[error(
        "EmojiWorld assets are missing in {0}: run scripts/fetch-assets (or set SUTI_ASSETS_DIR)"
    )]
    Missing(PathBuf),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// emoji.json or an image is malformed.
    #[error("malformed asset {path}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The usable subject classes, sorted by short name.
#[derive(Debug, Clone)]
pub struct Catalog {
    classes: Vec<Arc<SubjectClass>>,
}

impl Catalog {
    /// Builds the catalog from the bytes of `emoji.json`.
    pub fn from_emoji_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let raw: Vec<RawEmoji> = serde_json::from_slice(bytes)?;
        let mut classes: Vec<Arc<SubjectClass>> = raw
            .into_iter()
            .filter(|e| e.has_img_google && e.has_img_twitter)
            .filter_map(|e| {
                let name = e.name.clone()?;
                if name.split(' ').any(|w| EXCLUDED_NAME_WORDS.contains(&w)) {
                    return None;
                }
                let (category, kind) = classify(&e)?;
                let noun = class_noun(&name);
                if noun.is_empty() {
                    return None;
                }
                Some(Arc::new(SubjectClass {
                    split: Split::of(&e.unified),
                    unified: e.unified,
                    name,
                    short_name: e.short_name,
                    noun,
                    category,
                    kind,
                    image: e.image,
                }))
            })
            .collect();
        classes.sort_by(|a, b| a.short_name.cmp(&b.short_name));
        classes.dedup_by(|a, b| a.short_name == b.short_name);
        Ok(Self { classes })
    }

    /// Every class.
    pub fn classes(&self) -> &[Arc<SubjectClass>] {
        &self.classes
    }

    /// Every subject (class × vendor) in `split`, in a stable order.
    pub fn subjects(&self, split: Split) -> Vec<Subject> {
        self.classes
            .iter()
            .filter(|c| c.split == split)
            .flat_map(|c| {
                Vendor::ALL.into_iter().map(|vendor| Subject {
                    class: c.clone(),
                    vendor,
                })
            })
            .collect()
    }

    /// Finds a subject by id (`teapot-noto`).
    pub fn subject(&self, id: &str) -> Option<Subject> {
        let (short_name, vendor) = id.rsplit_once('-')?;
        let vendor = Vendor::ALL.into_iter().find(|v| v.as_str() == vendor)?;
        let class = self
            .classes
            .iter()
            .find(|c| c.short_name == short_name)?
            .clone();
        Some(Subject { class, vendor })
    }
}

/// Decoded artwork by (image file, vendor).
type SpriteCache = HashMap<(String, Vendor), Arc<RgbaImage>>;

/// The fetched artwork: emoji.json and the 64-pixel PNGs of both vendors, with decoded sprites
/// cached in memory.
#[derive(Debug, Clone)]
pub struct Assets {
    root: PathBuf,
    catalog: Catalog,
    sprites: Arc<Mutex<SpriteCache>>,
}

impl Assets {
    /// The default folder: `$SUTI_ASSETS_DIR`, else `~/.cache/suti/assets`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("SUTI_ASSETS_DIR") {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
        Path::new(&home).join(".cache/suti/assets")
    }

    /// Opens the assets in the default folder.
    pub fn open_default() -> Result<Self, AssetError> {
        Self::open(Self::default_dir())
    }

    /// Opens the assets in `root` (as laid out by `scripts/fetch-assets`).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, AssetError> {
        let root = root.into();
        for vendor in Vendor::ALL {
            if !root.join(vendor.folder()).join(".complete").exists() {
                return Err(AssetError::Missing(root));
            }
        }
        let path = root.join("google/emoji.json");
        let bytes = std::fs::read(&path).map_err(|source| AssetError::Io {
            path: path.clone(),
            source,
        })?;
        let catalog = Catalog::from_emoji_json(&bytes).map_err(|e| AssetError::Malformed {
            path,
            message: e.to_string(),
        })?;
        Ok(Self {
            root,
            catalog,
            sprites: Arc::default(),
        })
    }

    /// The subject catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The 64×64 RGBA artwork of a subject (decoded once, then cached).
    pub fn sprite(&self, subject: &Subject) -> Result<Arc<RgbaImage>, AssetError> {
        let key = (subject.class.image.clone(), subject.vendor);
        if let Some(sprite) = self
            .sprites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(sprite.clone());
        }
        let path = self
            .root
            .join(subject.vendor.folder())
            .join("64")
            .join(&subject.class.image);
        let bytes = std::fs::read(&path).map_err(|source| AssetError::Io {
            path: path.clone(),
            source,
        })?;
        let sprite = Arc::new(
            RgbaImage::from_png(&bytes).map_err(|e| AssetError::Malformed {
                path,
                message: e.to_string(),
            })?,
        );
        self.sprites
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, sprite.clone());
        Ok(sprite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_nouns_come_from_names() {
        for (name, noun) in [
            ("TEAPOT", "teapot"),
            ("DOG FACE", "dog"),
            ("RED APPLE", "apple"),
            ("NOTEBOOK WITH DECORATIVE COVER", "notebook"),
            ("CLOSED MAILBOX WITH LOWERED FLAG", "mailbox"),
            ("FRONT-FACING BABY CHICK", "chick"),
            ("EAR OF MAIZE", "corn"),
            ("WOMANS HAT", "hat"),
            ("MANS SHOE", "shoe"),
            ("HOCHO", "knife"),
            ("HIGH-SPEED TRAIN WITH BULLET NOSE", "train"),
        ] {
            assert_eq!(class_noun(name), noun, "{name}");
        }
    }

    #[test]
    fn the_split_is_fixed() {
        // Pinned (FNV-1a-64 of the codepoint, mod 10): changing the split function would silently
        // move subjects between training and evaluation.
        for (unified, split) in [
            ("1F375", Split::Train),
            ("1F415", Split::Validation),
            ("1F697", Split::Train),
            ("1FAD6", Split::Train),
            ("1F436", Split::Train),
        ] {
            assert_eq!(Split::of(unified), split, "{unified}");
        }
        let held_out = (0..2000)
            .filter(|i| Split::of(&format!("{i:X}")) == Split::HeldOut)
            .count();
        assert!(
            (150..250).contains(&held_out),
            "about a tenth is held out: {held_out}"
        );
    }
}
