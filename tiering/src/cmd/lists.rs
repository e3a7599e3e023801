use super::CommandDef;
pub(crate) static COMMANDS: &[CommandDef] = &[];
