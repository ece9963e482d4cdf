#!/usr/bin/env bash
# Build a loopback Debian archive for the patch tests from real .deb files:
#   make-archive.sh DEBS_DIR OUT_DIR
# DEBS_DIR holds the packages (.ci/run fetches them with `apt-get download`).
# OUT_DIR gets pool/, dists/bookworm/{InRelease,Release,main/binary-amd64/
# Packages{,.gz,.xz}}, keyring.gpg (the throwaway signing key, public part)
# and other-keyring.asc (an unrelated key, for the bad-signature test). The
# throwaway key's GnuPG home stays beside it, in OUT_DIR.gnupg (not served),
# so that a test can change the archive later:
#   make-archive.sh --resign OUT_DIR
# indexes OUT_DIR/pool/main again and signs a new InRelease with that key
# (as a mirror does when it gains or loses packages).
set -euo pipefail
suite=bookworm

index_and_sign() {
  local out="$1"
  (cd "$out" && dpkg-scanpackages --multiversion pool/main /dev/null 2>/dev/null) \
    >"$out/dists/$suite/main/binary-amd64/Packages"
  gzip -9knf "$out/dists/$suite/main/binary-amd64/Packages"
  xz -kf "$out/dists/$suite/main/binary-amd64/Packages"
  {
    echo "Origin: drydock-test"
    echo "Suite: $suite"
    echo "Codename: $suite"
    echo "Architectures: amd64"
    echo "Components: main"
    echo "Date: $(LC_ALL=C date -u -R)"
    echo "SHA256:"
    (cd "$out/dists/$suite" && for f in main/binary-amd64/Packages main/binary-amd64/Packages.gz main/binary-amd64/Packages.xz; do
      printf ' %s %s %s\n' "$(sha256sum "$f" | cut -d' ' -f1)" "$(stat -c %s "$f")" "$f"
    done)
  } >"$out/dists/$suite/Release"
  # Written beside and renamed: a client never reads half an InRelease.
  gpg --batch -q --yes --local-user 'archive@test.invalid' --clearsign \
    -o "$out/dists/$suite/InRelease.new" "$out/dists/$suite/Release"
  mv "$out/dists/$suite/InRelease.new" "$out/dists/$suite/InRelease"
}

export GNUPGHOME
# The agent gpg starts for the home is stopped when the script ends.
trap 'gpgconf --kill all >/dev/null 2>&1 || true' EXIT

if [ "$1" = --resign ]; then
  out="$2"
  GNUPGHOME="$out.gnupg"
  index_and_sign "$out"
  exit 0
fi

debs="$1"
out="$2"
rm -rf "$out" "$out.gnupg"
mkdir -p "$out/pool/main" "$out/dists/$suite/main/binary-amd64"
# Named as in a Debian pool: `apt-get download` writes an epoch into the
# file name as `1%3a`, which a pool never has (and a URL would decode).
for f in "$debs"/*.deb; do
  b="$(basename "$f")"
  cp "$f" "$out/pool/main/$(printf '%s' "$b" | sed -E 's/_[0-9]+%3[aA]/_/')"
done
GNUPGHOME="$out.gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch -q --passphrase '' --quick-gen-key 'drydock test archive <archive@test.invalid>' ed25519 sign never
gpg --batch -q --passphrase '' --quick-gen-key 'someone else <other@test.invalid>' ed25519 sign never
gpg --batch -q --export 'archive@test.invalid' >"$out/keyring.gpg"
gpg --batch -q --armor --export 'other@test.invalid' >"$out/other-keyring.asc"
index_and_sign "$out"
