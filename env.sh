# `source env.sh`: the environment `make` sets, for calling the entry points directly
# (.venv/bin/python -m ddpm_lightning.train ...): MNIST and the Inception weights from ../shared when that
# folder holds them (this project's machines and CI); elsewhere nothing is set and MNIST is downloaded.
_ddpm_here="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ -z "${DDPM_DATA_DIR:-}" ] && [ -d "$_ddpm_here/../shared/data/MNIST/raw" ]; then
  export DDPM_DATA_DIR="$(cd "$_ddpm_here/../shared/data" && pwd)"
fi
if [ -z "${DDPM_FID_WEIGHTS:-}" ] && [ -f "$_ddpm_here/../shared/weights/pt_inception-2015-12-05.pth" ]; then
  export DDPM_FID_WEIGHTS="$(cd "$_ddpm_here/../shared/weights" && pwd)/pt_inception-2015-12-05.pth"
fi
unset _ddpm_here
