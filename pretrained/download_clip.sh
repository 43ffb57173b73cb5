#!/usr/bin/env bash
# Fetches OpenAI's CLIP archives into pretrained/ and checks the SHA256 prefix in their URLs.
# Run by hand on a machine with internet access; nothing in this project downloads by itself.
set -euo pipefail
cd "$(dirname "$0")"
base=https://openaipublic.azureedge.net/clip/models
declare -A files=(
    [RN50.pt]=afeb0e10bbcd4c9c6e2e26b8d9be1ba5aa10ee7d5a64d2ffc09e7b0d87b0ebe9
    [RN101.pt]=8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599
    [ViT-B-16.pt]=5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f
)
for name in "${!files[@]}"; do
    sha=${files[$name]}
    if [ ! -f "$name" ]; then
        curl -fL -o "$name.part" "$base/$sha/$name"
        mv "$name.part" "$name"
    fi
    echo "$sha  $name" | sha256sum -c -
done
