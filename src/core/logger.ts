/**
 * The logger seam. Layers below the apps log through this interface; the CLI
 * passes a pino instance (which satisfies it), tests pass `nullLogger` or a
 * recording logger. Secrets are never passed as fields.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => undefined;
export const nullLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => nullLogger,
};
