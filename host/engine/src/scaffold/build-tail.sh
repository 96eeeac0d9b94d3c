sha="$(sha256sum __CRATE__.wasm | cut -d' ' -f1)"
sed "s/^sha256 = .*/sha256 = \"$sha\"/" plugin.toml > plugin.toml.tmp && mv plugin.toml.tmp plugin.toml
echo "built __CRATE__.wasm: $(wc -c < __CRATE__.wasm) bytes, sha256 $sha"
