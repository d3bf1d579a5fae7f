// Small helpers every layer may use; nothing here imports from the provider's other folders.
export { withDeadline } from "./deadline";
