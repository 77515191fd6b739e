/**
 * The controller sequence of issue 19 with the raw reply bodies
 * mtt-mu-server sends, written by hand from its source (not produced by our
 * encoder): `sendMURes` is `json.Marshal` of
 *
 *   type MURes struct {
 *     Res          int    `json:"res,omitempty"`
 *     ErrString    string `json:"err_string,omitempty"`
 *     CurrentUsers int    `json:"current_users,omitempty"`
 *   }
 *
 * so zero fields vanish and the field order is the declaration order, no
 * spaces. `current_users` is only ever non-zero on ping (every other reply
 * passes 0). `''` is no body at all: the handler returned before writing
 * (not POST; the body reached 2 MiB; json.Unmarshal failed — including
 * `"opt":3.0`, which Go refuses to put in an int).
 */
export interface ControllerStep {
  readonly what: string;
  readonly method: 'POST' | 'GET';
  /** The request body (a Buffer for the oversized one). */
  readonly body: string | Buffer;
  /** The raw reply body mtt sends. */
  readonly reply: string;
}

const MIB2 = 2 * 1024 * 1024;

/** A valid ping padded with spaces to 2 MiB + 1 byte: mtt stops reading at 2 MiB and answers nothing. */
function oversized(): Buffer {
  const cmd = Buffer.from('{"opt":9}');
  return Buffer.concat([cmd, Buffer.alloc(MIB2 + 1 - cmd.length, 0x20)]);
}

/** Builds the sequence; `dst` is any host:port. */
export function controllerSequence(dst: string): ControllerStep[] {
  return [
    { what: 'ping on a fresh server', method: 'POST', body: '{"opt":9}', reply: '{"res":1}' },
    { what: 'add two', method: 'POST', body: `{"opt":1,"args_bunch":[{"path":"/path_1","dst":"${dst}"},{"path":"/path_2","dst":"${dst}"}]}`, reply: '{"res":1}' },
    { what: 'ping after two adds', method: 'POST', body: '{"opt":9}', reply: '{"res":1,"current_users":2}' },
    { what: 'overwrite', method: 'POST', body: `{"opt":1,"args_bunch":[{"path":"/path_1","dst":"${dst}"}]}`, reply: '{"res":1}' },
    { what: 'ping after an overwrite', method: 'POST', body: '{"opt":9}', reply: '{"res":1,"current_users":2}' },
    { what: 'delete existing + missing', method: 'POST', body: '{"opt":2,"args_bunch":[{"path":"/path_2"},{"path":"/missing"}]}', reply: '{"res":1}' },
    { what: 'ping after a delete', method: 'POST', body: '{"opt":9}', reply: '{"res":1,"current_users":1}' },
    { what: 'invalid opt', method: 'POST', body: '{"opt":5}', reply: '{"res":2,"err_string":"invalid opt"}' },
    { what: 'add with empty args', method: 'POST', body: '{"opt":1,"args_bunch":[]}', reply: '{"res":2,"err_string":"empty args"}' },
    { what: 'delete without args', method: 'POST', body: '{"opt":2}', reply: '{"res":2,"err_string":"empty args"}' },
    { what: 'add without dst', method: 'POST', body: '{"opt":1,"args_bunch":[{"path":"/nodst"}]}', reply: '{"res":1}' },
    { what: 'ping after a dst-less add (mtt counts it)', method: 'POST', body: '{"opt":9}', reply: '{"res":1,"current_users":2}' },
    { what: 'garbage', method: 'POST', body: 'hello, controller', reply: '' },
    { what: '2 MiB + 1', method: 'POST', body: oversized(), reply: '' },
    { what: 'float opt 3.0 (not a reset)', method: 'POST', body: '{"opt":3.0}', reply: '' },
    { what: 'ping after the float opt', method: 'POST', body: '{"opt":9}', reply: '{"res":1,"current_users":2}' },
    { what: 'string opt', method: 'POST', body: '{"opt":"9"}', reply: '' },
    { what: 'reset', method: 'POST', body: '{"opt":3}', reply: '{"res":1}' },
    { what: 'ping after a reset', method: 'POST', body: '{"opt":9}', reply: '{"res":1}' },
    { what: 'GET', method: 'GET', body: '', reply: '' },
  ];
}
