//! The DreamBench prompt set (Ruiz et al., DreamBooth, 2023): 25 prompts per subject. Objects get
//! 20 recontextualisations and 5 property changes; live subjects (animals) get 10
//! recontextualisations, 10 accessorisations and 5 property changes. `{}` stands for the subject
//! phrase (the identifier token and class noun, "sks teapot", or the noun alone).

use serde::{Deserialize, Serialize};

use crate::emoji::SubjectKind;

/// What a prompt asks to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// The subject in a new place.
    Recontextualisation,
    /// The subject wearing something.
    Accessorisation,
    /// The subject with a changed property (colour, material, shape).
    Property,
}

/// A background the renderer draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scene {
    /// In the jungle.
    Jungle,
    /// In the snow.
    Snow,
    /// On the beach.
    Beach,
    /// On a cobblestone street.
    CobblestoneStreet,
    /// On top of pink fabric.
    PinkFabric,
    /// On top of a wooden floor.
    WoodenFloor,
    /// With a city in the background.
    City,
    /// With a mountain in the background.
    Mountain,
    /// With a blue house in the background.
    BlueHouse,
    /// On top of a purple rug in a forest.
    PurpleRugInForest,
    /// With a wheat field in the background.
    WheatField,
    /// With a tree and autumn leaves in the background.
    AutumnTree,
    /// With the Eiffel Tower in the background.
    EiffelTower,
    /// Floating on top of water.
    FloatingOnWater,
    /// Floating in an ocean of milk.
    OceanOfMilk,
    /// On top of green grass with sunflowers around it.
    GrassWithSunflowers,
    /// On top of a mirror.
    Mirror,
    /// On top of the sidewalk in a crowded street.
    CrowdedSidewalk,
    /// On top of a dirt road.
    DirtRoad,
    /// On top of a white rug.
    WhiteRug,
    /// A plain backdrop, for accessorisation and property prompts.
    Studio,
}

impl Scene {
    /// The 20 recontextualisation scenes, in DreamBench order.
    pub const RECONTEXTUALISATION: [Scene; 20] = [
        Scene::Jungle,
        Scene::Snow,
        Scene::Beach,
        Scene::CobblestoneStreet,
        Scene::PinkFabric,
        Scene::WoodenFloor,
        Scene::City,
        Scene::Mountain,
        Scene::BlueHouse,
        Scene::PurpleRugInForest,
        Scene::WheatField,
        Scene::AutumnTree,
        Scene::EiffelTower,
        Scene::FloatingOnWater,
        Scene::OceanOfMilk,
        Scene::GrassWithSunflowers,
        Scene::Mirror,
        Scene::CrowdedSidewalk,
        Scene::DirtRoad,
        Scene::WhiteRug,
    ];

    /// How a person would say where the subject is, for captions ("on the beach").
    pub fn phrase(self) -> &'static str {
        match self {
            Scene::Jungle => "in the jungle",
            Scene::Snow => "in the snow",
            Scene::Beach => "on the beach",
            Scene::CobblestoneStreet => "on a cobblestone street",
            Scene::PinkFabric => "on pink fabric",
            Scene::WoodenFloor => "on the wooden floor",
            Scene::City => "in front of the city skyline",
            Scene::Mountain => "with the mountains behind it",
            Scene::BlueHouse => "in front of the blue house",
            Scene::PurpleRugInForest => "on a purple rug out in the forest",
            Scene::WheatField => "by the wheat field",
            Scene::AutumnTree => "under the autumn tree",
            Scene::EiffelTower => "in front of the Eiffel Tower",
            Scene::FloatingOnWater => "floating on the lake",
            Scene::OceanOfMilk => "floating in a sea of milk",
            Scene::GrassWithSunflowers => "in the grass among the sunflowers",
            Scene::Mirror => "on the mirror",
            Scene::CrowdedSidewalk => "on the busy sidewalk",
            Scene::DirtRoad => "on the dirt road",
            Scene::WhiteRug => "on the white rug",
            Scene::Studio => "in the studio",
        }
    }
}

/// Something a live subject wears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accessory {
    /// A red hat.
    RedHat,
    /// A santa hat.
    SantaHat,
    /// A rainbow scarf.
    RainbowScarf,
    /// A black top hat and a monocle.
    TopHatAndMonocle,
    /// A chef outfit.
    ChefOutfit,
    /// A firefighter outfit.
    FirefighterOutfit,
    /// A police outfit.
    PoliceOutfit,
    /// Pink glasses.
    PinkGlasses,
    /// A yellow shirt.
    YellowShirt,
    /// A purple wizard outfit.
    PurpleWizardOutfit,
}

/// A property change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Red.
    Red,
    /// Purple.
    Purple,
    /// Shiny.
    Shiny,
    /// Wet.
    Wet,
    /// Cube shaped.
    CubeShaped,
}

/// One prompt of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    /// Stable id (`jungle`, `red_hat`, `cube_shaped`).
    pub id: &'static str,
    /// Text with `{}` for the subject phrase.
    pub template: &'static str,
    /// What it changes.
    pub kind: PromptKind,
    /// The background.
    pub scene: Scene,
    /// What the subject wears, if anything.
    pub accessory: Option<Accessory>,
    /// The property change, if any.
    pub property: Option<Property>,
}

impl Prompt {
    /// The prompt text for a subject phrase (`a sks teapot in the jungle`).
    pub fn text(&self, subject: &str) -> String {
        self.template.replacen("{}", subject, 1)
    }
}

const fn recontext(id: &'static str, template: &'static str, scene: Scene) -> Prompt {
    Prompt {
        id,
        template,
        kind: PromptKind::Recontextualisation,
        scene,
        accessory: None,
        property: None,
    }
}

const fn accessory(id: &'static str, template: &'static str, accessory: Accessory) -> Prompt {
    Prompt {
        id,
        template,
        kind: PromptKind::Accessorisation,
        scene: Scene::Studio,
        accessory: Some(accessory),
        property: None,
    }
}

const fn property(id: &'static str, template: &'static str, property: Property) -> Prompt {
    Prompt {
        id,
        template,
        kind: PromptKind::Property,
        scene: Scene::Studio,
        accessory: None,
        property: Some(property),
    }
}

const RECONTEXT: [Prompt; 20] = [
    recontext("jungle", "a {} in the jungle", Scene::Jungle),
    recontext("snow", "a {} in the snow", Scene::Snow),
    recontext("beach", "a {} on the beach", Scene::Beach),
    recontext(
        "cobblestone_street",
        "a {} on a cobblestone street",
        Scene::CobblestoneStreet,
    ),
    recontext(
        "pink_fabric",
        "a {} on top of pink fabric",
        Scene::PinkFabric,
    ),
    recontext(
        "wooden_floor",
        "a {} on top of a wooden floor",
        Scene::WoodenFloor,
    ),
    recontext("city", "a {} with a city in the background", Scene::City),
    recontext(
        "mountain",
        "a {} with a mountain in the background",
        Scene::Mountain,
    ),
    recontext(
        "blue_house",
        "a {} with a blue house in the background",
        Scene::BlueHouse,
    ),
    recontext(
        "purple_rug_forest",
        "a {} on top of a purple rug in a forest",
        Scene::PurpleRugInForest,
    ),
    recontext(
        "wheat_field",
        "a {} with a wheat field in the background",
        Scene::WheatField,
    ),
    recontext(
        "autumn_tree",
        "a {} with a tree and autumn leaves in the background",
        Scene::AutumnTree,
    ),
    recontext(
        "eiffel_tower",
        "a {} with the Eiffel Tower in the background",
        Scene::EiffelTower,
    ),
    recontext(
        "floating_water",
        "a {} floating on top of water",
        Scene::FloatingOnWater,
    ),
    recontext(
        "ocean_of_milk",
        "a {} floating in an ocean of milk",
        Scene::OceanOfMilk,
    ),
    recontext(
        "sunflowers",
        "a {} on top of green grass with sunflowers around it",
        Scene::GrassWithSunflowers,
    ),
    recontext("mirror", "a {} on top of a mirror", Scene::Mirror),
    recontext(
        "crowded_sidewalk",
        "a {} on top of the sidewalk in a crowded street",
        Scene::CrowdedSidewalk,
    ),
    recontext("dirt_road", "a {} on top of a dirt road", Scene::DirtRoad),
    recontext("white_rug", "a {} on top of a white rug", Scene::WhiteRug),
];

const ACCESSORIES: [Prompt; 10] = [
    accessory("red_hat", "a {} wearing a red hat", Accessory::RedHat),
    accessory("santa_hat", "a {} wearing a santa hat", Accessory::SantaHat),
    accessory(
        "rainbow_scarf",
        "a {} wearing a rainbow scarf",
        Accessory::RainbowScarf,
    ),
    accessory(
        "top_hat_monocle",
        "a {} wearing a black top hat and a monocle",
        Accessory::TopHatAndMonocle,
    ),
    accessory(
        "chef_outfit",
        "a {} in a chef outfit",
        Accessory::ChefOutfit,
    ),
    accessory(
        "firefighter_outfit",
        "a {} in a firefighter outfit",
        Accessory::FirefighterOutfit,
    ),
    accessory(
        "police_outfit",
        "a {} in a police outfit",
        Accessory::PoliceOutfit,
    ),
    accessory(
        "pink_glasses",
        "a {} wearing pink glasses",
        Accessory::PinkGlasses,
    ),
    accessory(
        "yellow_shirt",
        "a {} wearing a yellow shirt",
        Accessory::YellowShirt,
    ),
    accessory(
        "purple_wizard",
        "a {} in a purple wizard outfit",
        Accessory::PurpleWizardOutfit,
    ),
];

const PROPERTIES: [Prompt; 5] = [
    property("red", "a red {}", Property::Red),
    property("purple", "a purple {}", Property::Purple),
    property("shiny", "a shiny {}", Property::Shiny),
    property("wet", "a wet {}", Property::Wet),
    property("cube_shaped", "a cube shaped {}", Property::CubeShaped),
];

/// Every distinct prompt (20 + 10 + 5).
pub fn all_prompts() -> Vec<Prompt> {
    RECONTEXT
        .iter()
        .chain(ACCESSORIES.iter())
        .chain(PROPERTIES.iter())
        .copied()
        .collect()
}

/// The 25 prompts DreamBench gives a subject of this kind.
pub fn prompts_for(kind: SubjectKind) -> Vec<Prompt> {
    match kind {
        SubjectKind::Object => RECONTEXT.iter().chain(PROPERTIES.iter()).copied().collect(),
        SubjectKind::Live => RECONTEXT[..10]
            .iter()
            .chain(ACCESSORIES.iter())
            .chain(PROPERTIES.iter())
            .copied()
            .collect(),
    }
}

/// Finds a prompt by id.
pub fn prompt(id: &str) -> Option<Prompt> {
    all_prompts().into_iter().find(|p| p.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dreambench_gives_every_subject_25_prompts() {
        assert_eq!(prompts_for(SubjectKind::Object).len(), 25);
        assert_eq!(prompts_for(SubjectKind::Live).len(), 25);
        assert_eq!(all_prompts().len(), 35);
        let ids: std::collections::HashSet<_> = all_prompts().iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 35, "ids are unique");
        assert_eq!(
            prompt("jungle").unwrap().text("sks teapot"),
            "a sks teapot in the jungle"
        );
        assert_eq!(
            prompt("cube_shaped").unwrap().text("dog"),
            "a cube shaped dog"
        );
    }
}
