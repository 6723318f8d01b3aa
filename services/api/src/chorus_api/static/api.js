// The api over fetch: JSON in and out, Chorus's {"error": {code, message}} turned into ApiError.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export class Api {
  /** @param {() => string | null} token where the current access token is read from */
  constructor(token) {
    this.token = token;
    /** Called with the ApiError when a request comes back 401 (the session ended). */
    this.onUnauthorized = () => {};
  }

  headers(extra = {}) {
    const token = this.token();
    return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {{json?: any, form?: Record<string,string>, signal?: AbortSignal}} [options]
   */
  async request(method, path, { json, form, signal } = {}) {
    const init = { method, headers: this.headers({ Accept: "application/json" }), signal };
    if (json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    } else if (form !== undefined) {
      init.body = new URLSearchParams(form);
    }
    const response = await fetch(path, init);
    if (response.status === 204) return null;
    const body = await response.json().catch(() => null);
    if (!response.ok) throw this.failure(response.status, body);
    return body;
  }

  /** The ApiError of a failed response; a 401 to a request that carried a token ends the session. */
  failure(status, body) {
    const error = toError(status, body);
    if (status === 401 && this.token()) this.onUnauthorized(error);
    return error;
  }

  get(path, options) {
    return this.request("GET", path, options);
  }

  post(path, json) {
    return this.request("POST", path, { json });
  }

  patch(path, json) {
    return this.request("PATCH", path, { json });
  }

  delete(path) {
    return this.request("DELETE", path);
  }
}

/** The ApiError of a failed response body. */
export function toError(status, body) {
  const error = body && body.error ? body.error : {};
  const message = error.message || `request failed (${status})`;
  return new ApiError(status, error.code || "http_error", message, error.details);
}

/** A readable sentence for an ApiError (the password rules, validation details…). */
export function explain(error) {
  if (!(error instanceof ApiError)) return String(error.message || error);
  const details = Array.isArray(error.details) ? error.details : [];
  const parts = details
    .map((d) => (typeof d === "string" ? d : d && (d.message || d.msg)))
    .filter(Boolean);
  return parts.length ? `${error.message}: ${parts.join("; ")}` : error.message;
}
