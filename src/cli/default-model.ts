// The model that ships with the project (models/default/, see its MODEL_CARD.md): what every command that
// takes --model uses when none is given. One definition, shared with the library (src/default-model.ts).
import { defaultModelPath } from '../default-model.js';

export const DEFAULT_MODEL = defaultModelPath();
