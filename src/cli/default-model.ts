// The model that ships with the project (models/default/, see its MODEL_CARD.md): what every command that
// takes --model uses when none is given.
import { fileURLToPath } from 'node:url';

// dist/src/cli/ → the package root
export const DEFAULT_MODEL = fileURLToPath(new URL('../../../models/default/model.safetensors', import.meta.url));
