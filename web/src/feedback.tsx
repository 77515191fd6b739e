/** A page's last error (announced at once) and its last note (announced politely). */
export function Feedback({ error, note }: { error: string | null; note: string | null }) {
  return (
    <>
      {error !== null && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {note !== null && (
        <p class="note" role="status">
          {note}
        </p>
      )}
    </>
  );
}
