/** The bar on top of every dashboard page: the name, one link per page (by URL fragment), and Log out when there is a login. */
export function TopBar<P extends string>({ brand, pages, page, onLogout }: { brand: string; pages: Readonly<Record<P, string>>; page: P; onLogout?: (() => void) | undefined }) {
  return (
    <header class="top">
      <span class="brand">{brand}</span>
      <nav aria-label="Pages">
        {(Object.keys(pages) as P[]).map((p) => (
          <a key={p} href={`#/${p}`} aria-current={p === page ? 'page' : undefined}>
            {pages[p]}
          </a>
        ))}
      </nav>
      {onLogout !== undefined && (
        <button type="button" class="logout" onClick={onLogout}>
          Log out
        </button>
      )}
    </header>
  );
}
