// tus-js-client used as its README shows, in Node: uploads stdin to the endpoint given as argv[2]
// (argv[3]: chunk size, argv[4]: parallel uploads, concatenated by the server), prints progress
// lines, then the upload URL. Exits 1 on error.
import * as tus from 'tus-js-client'

const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const file = Buffer.concat(chunks)

const upload = new tus.Upload(file, {
  endpoint: process.argv[2],
  retryDelays: [0, 1000, 3000],
  chunkSize: Number(process.argv[3] || Infinity),
  parallelUploads: Number(process.argv[4] || 1),
  metadata: {
    filename: 'tour.mp4',
    filetype: 'video/mp4',
  },
  onError: function (error) {
    console.log('Failed because: ' + error)
    process.exit(1)
  },
  onProgress: function (bytesUploaded, bytesTotal) {
    console.log(bytesUploaded, bytesTotal)
  },
  onSuccess: function () {
    console.log(upload.url)
  },
})

upload.findPreviousUploads().then(function (previousUploads) {
  if (previousUploads.length) {
    upload.resumeFromPreviousUpload(previousUploads[0])
  }
  upload.start()
})
