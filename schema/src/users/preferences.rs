//! A user's editor preferences, stored as JSON on the user row.

use async_graphql::{Enum, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::validation;

/// Colour theme of the editor.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Theme {
    /// Dark text on a light background.
    Light,
    /// Light text on a dark background.
    Dark,
    /// Follow the operating system.
    #[default]
    System,
}

/// Key bindings of the editor.
#[derive(Enum, Copy, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Keymap {
    /// The editor's standard bindings.
    #[default]
    Default,
    /// Modal Vim bindings.
    Vim,
    /// Emacs bindings.
    Emacs,
}

/// How the editor looks and behaves for this user.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EditorSettings {
    /// Font size in pixels, 8 to 40.
    pub font_size: i32,
    /// Columns per indentation level, 1 to 8.
    pub tab_size: i32,
    /// Indent with tabs rather than spaces.
    pub use_tabs: bool,
    /// Key bindings.
    pub keymap: Keymap,
    /// Wrap long lines instead of scrolling sideways.
    pub word_wrap: bool,
    /// Show line numbers in the gutter.
    pub line_numbers: bool,
}

impl Default for EditorSettings {
    fn default() -> Self {
        Self {
            font_size: 14,
            tab_size: 4,
            use_tabs: false,
            keymap: Keymap::Default,
            word_wrap: false,
            line_numbers: true,
        }
    }
}

/// A user's preferences.
#[derive(SimpleObject, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Colour theme.
    pub theme: Theme,
    /// Editor settings.
    pub editor: EditorSettings,
}

impl Preferences {
    /// Read stored preferences; anything unreadable falls back to the defaults.
    pub fn from_json(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Apply a partial update; fields left out keep their value.
    pub fn apply(mut self, input: PreferencesInput) -> ApiResult<Self> {
        if let Some(theme) = input.theme {
            self.theme = theme;
        }
        if let Some(editor) = input.editor {
            let e = &mut self.editor;
            if let Some(size) = editor.font_size {
                e.font_size = validation::in_range("preferences.editor.fontSize", size, 8..=40)?;
            }
            if let Some(size) = editor.tab_size {
                e.tab_size = validation::in_range("preferences.editor.tabSize", size, 1..=8)?;
            }
            if let Some(v) = editor.use_tabs {
                e.use_tabs = v;
            }
            if let Some(v) = editor.keymap {
                e.keymap = v;
            }
            if let Some(v) = editor.word_wrap {
                e.word_wrap = v;
            }
            if let Some(v) = editor.line_numbers {
                e.line_numbers = v;
            }
        }
        Ok(self)
    }
}

/// A partial update of [`Preferences`]; omitted fields are left as they are.
#[derive(InputObject, Debug, Default)]
pub struct PreferencesInput {
    /// New colour theme.
    pub theme: Option<Theme>,
    /// Editor settings to change.
    pub editor: Option<EditorSettingsInput>,
}

/// A partial update of [`EditorSettings`].
#[derive(InputObject, Debug, Default)]
pub struct EditorSettingsInput {
    /// 8 to 40.
    pub font_size: Option<i32>,
    /// 1 to 8.
    pub tab_size: Option<i32>,
    /// Indent with tabs rather than spaces.
    pub use_tabs: Option<bool>,
    /// Key bindings.
    pub keymap: Option<Keymap>,
    /// Wrap long lines.
    pub word_wrap: Option<bool>,
    /// Show line numbers.
    pub line_numbers: Option<bool>,
}
