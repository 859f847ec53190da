//! The real DreamBench folder (the `dataset/` of google/dreambooth): one folder of photos per
//! subject, and `prompts_and_classes.txt` naming each subject's class and listing the object and
//! live-subject prompt templates. `suti eval --dreambench DIR` runs the same protocol on it as on
//! EmojiWorld's held-out set; there are no true images per prompt, so the "real images" row
//! compares each photo with the subject's other photos.

use std::path::{Path, PathBuf};

use crate::image::{DecodeLimits, ImageError, RgbaImage};

/// The classes DreamBench counts as live subjects (they get the live-subject prompts).
pub const LIVE_CLASSES: [&str; 2] = ["dog", "cat"];

/// One subject of the folder.
#[derive(Debug, Clone, PartialEq)]
pub struct DreamBenchSubject {
    /// Folder name (`backpack_dog`).
    pub id: String,
    /// Class noun (`backpack`).
    pub class_noun: String,
    /// A dog or a cat.
    pub live: bool,
    /// Its photos, sorted by name.
    pub photos: Vec<PathBuf>,
}

/// The whole set.
#[derive(Debug, Clone, PartialEq)]
pub struct DreamBench {
    /// The subjects, in the file's order.
    pub subjects: Vec<DreamBenchSubject>,
    /// Templates for objects, with `{0}` for the identifier and `{1}` for the class.
    pub object_prompts: Vec<String>,
    /// Templates for live subjects.
    pub live_prompts: Vec<String>,
}

/// Why the folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DreamBenchError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `prompts_and_classes.txt` is not in the expected layout.
    #[error("prompts_and_classes.txt: {0}")]
    Layout(String),
    /// A photo could not be decoded.
    #[error("{path}: {source}")]
    Photo {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        #[source]
        source: ImageError,
    },
}

impl DreamBench {
    /// The prompts for `subject` with the class noun alone (`a backpack in the jungle`).
    pub fn prompts_for(&self, subject: &DreamBenchSubject) -> Vec<String> {
        let templates = if subject.live {
            &self.live_prompts
        } else {
            &self.object_prompts
        };
        templates
            .iter()
            .map(|t| fill_template(t, None, &subject.class_noun))
            .collect()
    }
}

/// What `prompts_and_classes.txt` holds.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptsAndClasses {
    /// `(subject folder, class noun)`, in the file's order.
    pub classes: Vec<(String, String)>,
    /// The object prompt templates.
    pub object_prompts: Vec<String>,
    /// The live-subject prompt templates.
    pub live_prompts: Vec<String>,
}

/// A template with the identifier (or nothing) and the class filled in.
pub fn fill_template(template: &str, identifier: Option<&str>, class: &str) -> String {
    let with_identifier = match identifier {
        Some(id) => template.replace("{0}", id),
        None => template.replace("{0} ", "").replace("{0}", ""),
    };
    with_identifier.replace("{1}", class)
}

/// Parses `prompts_and_classes.txt`: a `subject_name,class` table, then `prompt_list = [...]`
/// blocks (the first for objects, the second for live subjects) of quoted templates.
pub fn parse_prompts_and_classes(text: &str) -> Result<PromptsAndClasses, DreamBenchError> {
    let mut classes = Vec::new();
    let mut lists: Vec<Vec<String>> = Vec::new();
    let mut in_list = false;
    let mut in_table = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("prompt_list") {
            in_list = true;
            in_table = false;
            lists.push(Vec::new());
            continue;
        }
        if in_list {
            if line.starts_with(']') {
                in_list = false;
                continue;
            }
            let quoted = ['\'', '"']
                .into_iter()
                .find_map(|q| {
                    let start = line.find(q)?;
                    let end = line[start + 1..].find(q)? + start + 1;
                    Some(line[start + 1..end].to_string())
                })
                .filter(|t| !t.is_empty());
            if let (Some(template), Some(list)) = (quoted, lists.last_mut()) {
                list.push(template);
            }
            continue;
        }
        if line.eq_ignore_ascii_case("subject_name,class") {
            in_table = true;
            continue;
        }
        if in_table {
            match line.split_once(',') {
                Some((name, class)) if !name.trim().is_empty() && !class.trim().is_empty() => {
                    classes.push((name.trim().to_string(), class.trim().to_string()));
                }
                _ if line.is_empty() => {}
                _ => in_table = false,
            }
        }
    }
    if classes.is_empty() {
        return Err(DreamBenchError::Layout(
            "no `subject_name,class` table".into(),
        ));
    }
    let mut lists = lists.into_iter().filter(|l| !l.is_empty());
    let (Some(object_prompts), Some(live_prompts)) = (lists.next(), lists.next()) else {
        return Err(DreamBenchError::Layout(
            "expected two prompt_list blocks (objects, then live subjects)".into(),
        ));
    };
    Ok(PromptsAndClasses {
        classes,
        object_prompts,
        live_prompts,
    })
}

/// Reads the folder: `dir/prompts_and_classes.txt` and `dir/<subject>/*.{jpg,jpeg,png}`.
pub fn load_dreambench(dir: &Path) -> Result<DreamBench, DreamBenchError> {
    let file = dir.join("prompts_and_classes.txt");
    let text = std::fs::read_to_string(&file).map_err(|source| DreamBenchError::Io {
        path: file.clone(),
        source,
    })?;
    let PromptsAndClasses {
        classes,
        object_prompts,
        live_prompts,
    } = parse_prompts_and_classes(&text)?;
    let mut subjects = Vec::with_capacity(classes.len());
    for (id, class_noun) in classes {
        let folder = dir.join(&id);
        let entries = std::fs::read_dir(&folder).map_err(|source| DreamBenchError::Io {
            path: folder.clone(),
            source,
        })?;
        let mut photos: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_lowercase().as_str()))
            })
            .collect();
        photos.sort();
        if photos.is_empty() {
            return Err(DreamBenchError::Layout(format!(
                "subject {id} has no photos in {}",
                folder.display()
            )));
        }
        subjects.push(DreamBenchSubject {
            live: LIVE_CLASSES.contains(&class_noun.as_str()),
            id,
            class_noun,
            photos,
        });
    }
    Ok(DreamBench {
        subjects,
        object_prompts,
        live_prompts,
    })
}

/// Decodes one photo (JPEG or PNG) under `limits`.
pub fn read_photo(path: &Path, limits: DecodeLimits) -> Result<RgbaImage, DreamBenchError> {
    let bytes = std::fs::read(path).map_err(|source| DreamBenchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    RgbaImage::decode_with_limits(&bytes, limits).map_err(|source| DreamBenchError::Photo {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "Classes\n\nsubject_name,class\nbackpack,backpack\ndog2,dog\n\n\
        Prompts\n\nObject Prompts\n\nprompt_list = [\n\
        'a {0} {1} in the jungle'.format(unique_token, class_token),\n\
        'a {0} {1} in the snow'.format(unique_token, class_token),\n]\n\n\
        Live Subject Prompts\n\nprompt_list = [\n\
        'a {0} {1} wearing a red hat'.format(unique_token, class_token),\n]\n";

    #[test]
    fn the_file_layout_parses_into_classes_and_both_prompt_lists() {
        let PromptsAndClasses {
            classes,
            object_prompts: objects,
            live_prompts: live,
        } = parse_prompts_and_classes(FILE).unwrap();
        assert_eq!(
            classes,
            vec![
                ("backpack".to_string(), "backpack".to_string()),
                ("dog2".to_string(), "dog".to_string())
            ]
        );
        assert_eq!(objects.len(), 2);
        assert_eq!(live, vec!["a {0} {1} wearing a red hat".to_string()]);
        assert_eq!(
            fill_template(&objects[0], None, "backpack"),
            "a backpack in the jungle"
        );
        assert_eq!(
            fill_template(&objects[1], Some("sks"), "backpack"),
            "a sks backpack in the snow"
        );
    }

    #[test]
    fn a_file_without_prompt_lists_is_refused() {
        let err = parse_prompts_and_classes("subject_name,class\ncan,can\n").unwrap_err();
        assert!(err.to_string().contains("prompt_list"), "{err}");
    }

    #[test]
    fn the_folder_loads_with_photos_sorted_and_live_subjects_marked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("prompts_and_classes.txt"), FILE).unwrap();
        for (subject, files) in [
            ("backpack", ["02.jpg", "00.jpg"]),
            ("dog2", ["a.png", "b.jpeg"]),
        ] {
            std::fs::create_dir_all(dir.path().join(subject)).unwrap();
            for f in files {
                std::fs::write(dir.path().join(subject).join(f), b"x").unwrap();
            }
            std::fs::write(dir.path().join(subject).join("notes.txt"), b"x").unwrap();
        }
        let set = load_dreambench(dir.path()).unwrap();
        assert_eq!(set.subjects.len(), 2);
        let names: Vec<_> = set.subjects[0]
            .photos
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["00.jpg", "02.jpg"]);
        assert!(!set.subjects[0].live && set.subjects[1].live);
        assert_eq!(
            set.prompts_for(&set.subjects[1]),
            vec!["a dog wearing a red hat".to_string()]
        );
        let bad = read_photo(&set.subjects[0].photos[0], DecodeLimits::default()).unwrap_err();
        assert!(matches!(bad, DreamBenchError::Photo { .. }), "{bad}");
    }
}
